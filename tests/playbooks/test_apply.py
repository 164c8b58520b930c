"""Applying approved candidates: every kind, reinforcement, replacement, skill patches
with stale bases and rebase, preview, terminal states and revert."""

import pytest

from learning.models import CandidateEvidence
from playbooks.apply import (
    ApplyFailed,
    candidate_apply,
    candidate_apply_preview,
    candidate_rebase,
    candidate_revert,
    patch_apply,
)
from playbooks.models import Memory, PlaybookVersion, Strategy
from playbooks.skills import skill_create, skill_update
from playbooks.versions import text_diff, text_hash
from review.models import AuditEvent
from review.services import Actor, AlreadyDecided, candidate_approve, candidate_deny
from tests.factories import (
    CandidateFactory,
    NamespaceFactory,
    TrajectoryFactory,
    make_playbook,
    make_strategy,
)

pytestmark = pytest.mark.django_db

REVIEWER = Actor("alice")


@pytest.fixture
def ns():
    return NamespaceFactory(slug="acme")


@pytest.fixture
def playbook(ns):
    return make_playbook(ns, "airline")


def approve(candidate):
    return candidate_approve(
        namespace=candidate.namespace, candidate_id=candidate.pk, actor=REVIEWER
    )


def test_helpful_strategy_apply_creates_next_version_with_diff_and_audit(ns, playbook):
    """Approving a strategy_helpful candidate adds the strategy as version 2, marks the
    candidate applied with that version, and records an apply audit event."""
    run = TrajectoryFactory(namespace=ns)
    candidate = CandidateFactory(
        namespace=ns,
        playbook=playbook,
        content="Check the membership tier first.",
        confidence=0.9,
        evidence_count=2,
        task_type="airline.baggage",
    )
    CandidateEvidence.objects.create(candidate=candidate, trajectory=run)

    candidate = approve(candidate)

    assert candidate.status == "applied"
    assert candidate.applied_version == 2
    assert candidate.applied_at is not None
    playbook.refresh_from_db()
    assert playbook.current_version == 2
    strategy = Strategy.objects.get(playbook=playbook)
    assert strategy.type == "helpful"
    assert strategy.source_candidate == candidate
    assert strategy.helpful_count == 2
    assert strategy.evidence == [str(run.id)]
    assert strategy.context == "airline.baggage"
    version = PlaybookVersion.objects.get(playbook=playbook, number=2)
    assert version.change_kind == "apply"
    assert version.candidate == candidate
    assert [a["description"] for a in version.diff["added"]] == [
        "Check the membership tier first."
    ]
    assert version.content[0]["key"] == str(strategy.key)
    event = AuditEvent.objects.get(candidate=candidate, action="apply")
    assert (event.from_status, event.to_status) == ("approved", "applied")
    assert event.data["version"] == 2


def test_harmful_and_procedure_kinds_become_playbook_strategies(ns, playbook):
    """strategy_harmful adds a harmful entry; procedure adds a helpful one marked as a
    procedure; each is its own version."""
    harmful = approve(
        CandidateFactory(
            namespace=ns,
            playbook=playbook,
            kind="strategy_harmful",
            content="Rebooking without checking the fare rules.",
        )
    )
    procedure = approve(
        CandidateFactory(
            namespace=ns,
            playbook=playbook,
            kind="procedure",
            content="1. Look up the reservation 2. Confirm cabin",
        )
    )
    assert (harmful.applied_version, procedure.applied_version) == (2, 3)
    pattern = Strategy.objects.get(source_candidate=harmful)
    # A harmful pattern described as an activity: to be avoided, said so once.
    assert (pattern.type, pattern.polarity) == ("harmful", "avoid")
    assert pattern.description == "Avoid rebooking without checking the fare rules."
    proc = Strategy.objects.get(source_candidate=procedure)
    assert proc.type == "helpful" and proc.context.startswith("procedure")


def test_procedure_without_playbook_finds_one_by_task_type(ns):
    """A candidate without a playbook learns into the task type's playbook."""
    candidate = approve(
        CandidateFactory(
            namespace=ns,
            kind="procedure",
            playbook=None,
            task_type="retail.return",
            content="Ask for the order id.",
        )
    )
    assert candidate.status == "applied"
    assert Strategy.objects.get(source_candidate=candidate).playbook.slug == "retail"


def test_duplicate_reinforces_existing_strategy_without_a_copy(ns, playbook):
    """When the duplicate audit names an active strategy of the playbook, applying adds
    the evidence to its helpful count in a new version instead of adding a copy."""
    existing = make_strategy(playbook, "Confirm the cabin class before searching.")
    run = TrajectoryFactory(namespace=ns)
    candidate = CandidateFactory(
        namespace=ns,
        playbook=playbook,
        content="Confirm cabin class before search.",
        evidence_count=3,
        confidence=0.95,
        audit={
            "conflict": [],
            "hygiene": [],
            "duplicate": [
                {
                    "severity": "info",
                    "message": "near-identical",
                    "related": [
                        {
                            "type": "strategy",
                            "id": existing.pk,
                            "text": existing.description,
                        }
                    ],
                }
            ],
        },
    )
    CandidateEvidence.objects.create(candidate=candidate, trajectory=run)

    candidate = approve(candidate)

    assert Strategy.objects.filter(playbook=playbook).count() == 1
    existing.refresh_from_db()
    assert existing.helpful_count == 3
    assert existing.confidence == 0.95
    assert str(run.id) in existing.evidence
    version = PlaybookVersion.objects.get(
        playbook=playbook, number=candidate.applied_version
    )
    assert version.diff["added"] == []
    assert version.diff["changed"][0]["fields"]["helpful_count"] == {"from": 0, "to": 3}


def test_replacement_retires_old_strategy_and_takes_its_place(ns, playbook):
    """With replaces_strategy, the old entry is retired and the new one sits at its
    position, in one version whose diff shows both."""
    first = make_strategy(playbook, "Old advice about fares.")
    make_strategy(playbook, "Second entry.")
    candidate = CandidateFactory(
        namespace=ns, playbook=playbook, content="Better fare advice."
    )
    candidate = candidate_approve(
        namespace=ns,
        candidate_id=candidate.pk,
        actor=REVIEWER,
        replace_strategy_id=first.pk,
    )
    first.refresh_from_db()
    assert not first.active
    new = Strategy.objects.get(source_candidate=candidate)
    assert new.position == first.position
    version = PlaybookVersion.objects.get(
        playbook=playbook, number=candidate.applied_version
    )
    assert [r["id"] for r in version.diff["removed"]] == [first.pk]
    assert [c["description"] for c in version.content] == [
        "Better fare advice.",
        "Second entry.",
    ]


def test_replacing_a_retired_strategy_fails_with_reason(ns, playbook):
    """A replacement target that is no longer active makes the apply fail (apply_failed,
    with the reason), and nothing is written to the playbook."""
    old = make_strategy(playbook, "Old advice.")
    Strategy.objects.filter(pk=old.pk).update(active=False)
    candidate = CandidateFactory(namespace=ns, playbook=playbook, replaces_strategy=old)
    candidate = approve(candidate)
    assert candidate.status == "apply_failed"
    assert "not an active strategy" in candidate.apply_error
    playbook.refresh_from_db()
    assert playbook.current_version == 2


def test_preference_and_durable_fact_become_memories(ns):
    """preference -> a user memory; durable_fact -> a namespace memory about an entity,
    with the candidate's confidence as importance."""
    pref = approve(
        CandidateFactory(
            namespace=ns,
            kind="preference",
            user_id="mia_li",
            content="Prefers window seats.",
            confidence=0.7,
        )
    )
    fact = approve(
        CandidateFactory(
            namespace=ns,
            kind="durable_fact",
            entity="HAT001",
            content="Flight HAT001 departs from JFK.",
            confidence=0.6,
        )
    )
    assert pref.status == fact.status == "applied"
    m1 = Memory.objects.get(source_candidate=pref)
    assert (m1.kind, m1.scope, m1.user_id, m1.importance) == (
        "preference",
        "user",
        "mia_li",
        0.7,
    )
    m2 = Memory.objects.get(source_candidate=fact)
    assert (m2.kind, m2.scope, m2.entity) == ("durable_fact", "namespace", "HAT001")


SKILL_TEXT = (
    "Step 1: look up the user.\nStep 2: look up the reservation.\nStep 3: act.\n"
)


def _patch_candidate(ns, skill, new_text, base_text=None):
    base_text = skill.text if base_text is None else base_text
    return CandidateFactory(
        namespace=ns,
        kind="patch_skill",
        skill=skill,
        content="Confirm before acting",
        patch=text_diff(base_text, new_text, name=skill.slug),
        base_hash=text_hash(base_text),
        confidence=0.9,
    )


def test_patch_skill_applies_the_diff_as_a_new_skill_version(ns):
    """A patch made against the current text applies: new text, version 2, diff kept."""
    skill = skill_create(namespace=ns, slug="rebook", text=SKILL_TEXT, actor="admin")
    new_text = SKILL_TEXT.replace(
        "Step 3: act.", "Step 3: confirm with the user.\nStep 4: act."
    )
    candidate = approve(_patch_candidate(ns, skill, new_text))
    skill.refresh_from_db()
    assert candidate.status == "applied" and candidate.applied_version == 2
    assert skill.text == new_text
    assert "+Step 3: confirm with the user." in skill.versions.get(number=2).diff


def test_stale_patch_fails_then_rebase_and_retry_applies(ns):
    """If the skill changed since the patch was made, apply fails with the reason;
    candidate_rebase re-targets the patch on the current text and a retry applies it
    on top of the intervening edit."""
    skill = skill_create(namespace=ns, slug="rebook", text=SKILL_TEXT, actor="admin")
    new_text = SKILL_TEXT.replace(
        "Step 3: act.", "Step 3: confirm first.\nStep 4: act."
    )
    candidate = _patch_candidate(ns, skill, new_text)
    skill_update(skill=skill, text="Step 0: greet.\n" + SKILL_TEXT, actor="admin")

    candidate = approve(candidate)
    assert candidate.status == "apply_failed"
    assert "changed since this patch was made" in candidate.apply_error

    candidate = candidate_rebase(candidate=candidate, actor="alice")
    skill.refresh_from_db()
    assert candidate.base_hash == text_hash(skill.text)
    candidate = approve(candidate)
    skill.refresh_from_db()
    assert candidate.status == "applied"
    assert skill.text == "Step 0: greet.\n" + new_text
    assert AuditEvent.objects.filter(candidate=candidate, action="rebase").exists()


def test_rebase_refuses_when_the_context_is_gone(ns):
    """A patch whose context lines were rewritten cannot be rebased: ApplyFailed."""
    skill = skill_create(namespace=ns, slug="rebook", text=SKILL_TEXT, actor="admin")
    candidate = _patch_candidate(ns, skill, SKILL_TEXT.replace("act.", "act now."))
    skill_update(skill=skill, text="Completely different.\n", actor="admin")
    candidate = approve(candidate)
    with pytest.raises(ApplyFailed, match="does not match"):
        candidate_rebase(candidate=candidate, actor="alice")


def test_full_text_skill_change_and_its_rebase(ns):
    """A candidate carrying the whole new text (no diff) applies when the base matches;
    against a changed skill it is rebased through the version history."""
    skill = skill_create(namespace=ns, slug="rebook", text=SKILL_TEXT, actor="admin")
    new_text = SKILL_TEXT + "Step 4: summarise.\n"
    candidate = CandidateFactory(
        namespace=ns,
        kind="patch_skill",
        skill=skill,
        content=new_text,
        base_hash=text_hash(SKILL_TEXT),
    )
    skill_update(skill=skill, text="Step 0: greet.\n" + SKILL_TEXT, actor="admin")
    assert approve(candidate).status == "apply_failed"
    candidate = approve(candidate_rebase(candidate=candidate, actor="alice"))
    skill.refresh_from_db()
    assert candidate.status == "applied"
    assert skill.text == "Step 0: greet.\n" + new_text


def test_patch_apply_strict_and_fuzzy():
    """Strict application needs the hunk where it says; fuzzy finds it nearby."""
    old = "a\nb\nc\n"
    patch = text_diff(old, "a\nB\nc\n")
    assert patch_apply(old, patch) == "a\nB\nc\n"
    shifted = "x\ny\n" + old
    with pytest.raises(ApplyFailed):
        patch_apply(shifted, patch)
    assert patch_apply(shifted, patch, fuzzy=True) == "x\ny\na\nB\nc\n"


def test_terminal_candidates_are_never_applied(ns, playbook):
    """A denied candidate cannot be approved (and so applied); candidate_apply refuses
    anything not in the approved state."""
    candidate = CandidateFactory(namespace=ns, playbook=playbook)
    candidate_deny(
        namespace=ns, candidate_id=candidate.pk, actor=REVIEWER, note="vague"
    )
    with pytest.raises(AlreadyDecided):
        approve(candidate)
    candidate.refresh_from_db()
    with pytest.raises(ApplyFailed):
        candidate_apply(candidate=candidate, actor="alice")
    assert not Strategy.objects.filter(playbook=playbook).exists()
    applied = approve(CandidateFactory(namespace=ns, playbook=playbook))
    with pytest.raises(AlreadyDecided):
        approve(applied)
    assert Strategy.objects.filter(playbook=playbook).count() == 1


def test_preview_shapes_for_each_target(ns, playbook):
    """Preview says what would change without writing anything."""
    existing = make_strategy(playbook, "Existing advice.")
    add = CandidateFactory(namespace=ns, playbook=playbook, content="New advice.")
    preview = candidate_apply_preview(candidate=add)
    assert preview["target"] == "playbook" and preview["name"] == "airline"
    assert (preview["from_version"], preview["to_version"]) == (2, 3)
    assert preview["diff"]["added"][0]["description"] == "New advice."
    dup = CandidateFactory(
        namespace=ns,
        playbook=playbook,
        evidence_count=2,
        audit={
            "duplicate": [
                {
                    "severity": "info",
                    "message": "dup",
                    "related": [{"type": "strategy", "id": existing.pk}],
                }
            ]
        },
    )
    changed = candidate_apply_preview(candidate=dup)["diff"]["changed"][0]
    assert changed["fields"]["helpful_count"] == {"from": 0, "to": 2}
    memory = candidate_apply_preview(
        candidate=CandidateFactory(
            namespace=ns, kind="preference", user_id="u1", content="Likes aisle."
        )
    )
    assert memory["target"] == "memory" and memory["name"] == "user:u1"
    skill = skill_create(namespace=ns, slug="s", text=SKILL_TEXT, actor="a")
    skill_preview = candidate_apply_preview(
        candidate=_patch_candidate(ns, skill, SKILL_TEXT + "x\n")
    )
    assert skill_preview["target"] == "skill" and "+x" in skill_preview["diff"]
    assert PlaybookVersion.objects.filter(playbook=playbook).count() == 2
    assert not Memory.objects.exists()


def test_revert_undoes_an_applied_strategy_in_a_new_version(ns, playbook):
    """Reverting an applied candidate retires its strategy in a new version and is
    recorded; a second revert is refused."""
    candidate = approve(
        CandidateFactory(namespace=ns, playbook=playbook, content="Try this.")
    )
    result = candidate_revert(candidate=candidate, actor="alice")
    assert result["version"] == 3
    assert not Strategy.objects.get(source_candidate=candidate).active
    assert PlaybookVersion.objects.get(playbook=playbook, number=3).content == []
    with pytest.raises(ApplyFailed, match="already reverted"):
        candidate_revert(candidate=candidate, actor="alice")


def test_revert_of_memory_and_reinforcement(ns, playbook):
    """Reverting a memory deactivates it; reverting a reinforcement takes the added
    helpful count back."""
    pref = approve(
        CandidateFactory(namespace=ns, kind="preference", user_id="u", content="x")
    )
    candidate_revert(candidate=pref, actor="alice")
    assert not Memory.objects.get(source_candidate=pref).active
    existing = make_strategy(playbook, "Advice.")
    dup = approve(
        CandidateFactory(
            namespace=ns,
            playbook=playbook,
            evidence_count=4,
            audit={
                "duplicate": [
                    {
                        "severity": "info",
                        "message": "dup",
                        "related": [{"type": "strategy", "id": existing.pk}],
                    }
                ]
            },
        )
    )
    existing.refresh_from_db()
    assert existing.helpful_count == 4
    candidate_revert(candidate=dup, actor="alice")
    existing.refresh_from_db()
    assert existing.helpful_count == 0 and existing.active


def test_revert_reads_the_version_not_the_audit_trail(ns, playbook):
    """Revert undoes what the candidate's version recorded: a replacement is undone
    (the new strategy retired, the replaced one back) even with the audit trail
    emptied, and the revert version points at the version it undid."""
    from review.models import AuditEvent

    old = make_strategy(playbook, "Offer a voucher at once.")
    candidate = approve(
        CandidateFactory(
            namespace=ns,
            playbook=playbook,
            content="Offer a voucher only after the refund fails.",
            replaces_strategy=old,
        )
    )
    made = PlaybookVersion.objects.get(candidate=candidate)
    AuditEvent.objects.all().delete()
    result = candidate_revert(candidate=candidate, actor="alice")
    old.refresh_from_db()
    assert old.active and result["op"] == "replace"
    assert not Strategy.objects.get(source_candidate=candidate).active
    undo = PlaybookVersion.objects.get(playbook=playbook, number=result["version"])
    assert undo.reverts == made and result["reverted_version"] == made.number
    assert [s["key"] for s in undo.content] == [str(old.key)]
