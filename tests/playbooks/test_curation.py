"""Curation merges near-duplicates keeping their evidence, retires harmful and decays
stale strategies in one version; consolidation summarises low-importance memories."""

from datetime import timedelta

import pytest
from django.utils import timezone

from playbooks import curation
from playbooks.memories import memory_create
from playbooks.models import Memory, PlaybookVersion, Strategy
from playbooks.tasks import memories_consolidate, playbooks_curate
from review.models import AuditEvent
from tests.factories import NamespaceFactory, make_playbook, make_strategy

pytestmark = pytest.mark.django_db


@pytest.fixture
def ns():
    return NamespaceFactory(slug="acme")


def test_curation_merges_retires_and_decays_in_one_version(ns):
    """Near-duplicates merge into the stronger one (counts summed, evidence united);
    harmful-outweighs-helpful is retired; long-unused decays or retires; fresh and
    distinct strategies stay as they were."""
    pb = make_playbook(ns, "airline")
    a = make_strategy(pb, "Confirm the cabin class before searching for flights.")
    b = make_strategy(pb, "Confirm the cabin class before searching for flights!")
    bad = make_strategy(pb, "Offer a voucher immediately.")
    old = make_strategy(pb, "Quote the fare rules.", confidence=0.5)
    dying = make_strategy(pb, "Mention the lounge.", confidence=0.15)
    keep = make_strategy(pb, "Ask for the reservation id.", confidence=0.6)
    Strategy.objects.filter(pk=a.pk).update(helpful_count=2, evidence=["r1"])
    Strategy.objects.filter(pk=b.pk).update(
        helpful_count=5, evidence=["r2"], confidence=0.9
    )
    Strategy.objects.filter(pk=bad.pk).update(helpful_count=1, harmful_count=4)
    long_ago = timezone.now() - timedelta(days=100)
    Strategy.objects.filter(pk__in=[old.pk, dying.pk]).update(
        created_at=long_ago, updated_at=long_ago
    )

    report = curation.playbook_curate(playbook=pb)

    assert report["merged"] == [{"into": b.pk, "retired": a.pk}]
    assert report["retired_harmful"] == [bad.pk]
    assert report["decayed"] == [old.pk] and report["retired_stale"] == [dying.pk]
    b.refresh_from_db()
    assert (b.helpful_count, sorted(b.evidence), b.confidence) == (7, ["r1", "r2"], 0.9)
    old.refresh_from_db()
    assert old.confidence == 0.4
    version = PlaybookVersion.objects.get(playbook=pb, number=report["version"])
    assert version.change_kind == "curation"
    assert {r["id"] for r in version.diff["removed"]} == {a.pk, bad.pk, dying.pk}
    assert {c["id"] for c in version.content} == {b.pk, old.pk, keep.pk}
    # Nothing left to do: no new version.
    assert curation.playbook_curate(playbook=pb)["version"] is None
    assert playbooks_curate() == {"playbooks_changed": 0}


def test_curation_merges_by_the_duplicate_audits_rule(ns):
    """Curation and the duplicate audit agree about a pair: paraphrases with the same
    words merge; different advice and opposite advice on the same words do not."""
    from learning.text.similarity import is_near_duplicate

    pairs = [
        ("Check the membership tier first.", "check the membership tier first", True),
        ("Check the fare rules first.", "Refund the ticket to the card.", False),
        (
            "Always reply to the user in English.",
            "Never reply to the user in English.",
            False,
        ),
    ]
    pb = make_playbook(ns, "merge-rule")
    made = []
    for a, b, _same in pairs:
        made.append(
            (
                make_strategy(pb, a),
                make_strategy(pb, b),
            )
        )
    groups = curation._duplicate_groups(list(pb.strategies.all()))
    grouped = {frozenset(s.pk for s in g) for g in groups}
    for (a, b, same), (sa, sb) in zip(pairs, made):
        assert is_near_duplicate(a, b) is same
        assert (frozenset({sa.pk, sb.pk}) in grouped) is same


def test_consolidation_summarises_low_importance_groups_only(ns):
    """Three low-importance preferences of one user become one summary; the
    high-importance one and a group too small stay active."""
    low = [
        memory_create(
            namespace=ns, kind="preference", user_id="u1", importance=0.2, content=text
        )
        for text in [
            "Likes window seats.",
            "Likes window seats",
            "Prefers morning flights.",
        ]
    ]
    high = memory_create(
        namespace=ns,
        kind="preference",
        user_id="u1",
        importance=0.9,
        content="Is a gold member.",
    )
    pair = [
        memory_create(
            namespace=ns,
            kind="preference",
            user_id="u2",
            importance=0.1,
            content=f"note {i}",
        )
        for i in range(2)
    ]

    assert memories_consolidate() == {"summaries_created": 1}

    summary = Memory.objects.get(kind="summary")
    assert summary.user_id == "u1" and summary.importance == 0.2
    assert summary.content.count("Likes window seats") == 1
    assert "Prefers morning flights." in summary.content
    assert set(summary.sources.values_list("pk", flat=True)) == {m.pk for m in low}
    assert (
        Memory.objects.filter(
            pk__in=[high.pk] + [m.pk for m in pair], active=True
        ).count()
        == 3
    )
    assert (
        AuditEvent.objects.get(action="memory_consolidate").data["summariser"]
        == "offline"
    )


def test_claude_summary_is_used_and_falls_back_offline(ns, settings, monkeypatch):
    """With an API key the Claude summariser is used; when it fails the offline one."""
    settings.ANTHROPIC_API_KEY = "sk-test"
    monkeypatch.setattr(
        curation, "summarise_with_claude", lambda texts: "Claude summary."
    )
    assert curation.summarise(["a", "b"]) == (
        "Claude summary.",
        settings.ANTHROPIC_MODEL,
    )

    def boom(texts):
        raise RuntimeError("network down")

    monkeypatch.setattr(curation, "summarise_with_claude", boom)
    text, by = curation.summarise(["a", "b"])
    assert by == "offline" and "- a" in text
