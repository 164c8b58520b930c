"""Hand edits, reordering, rollback, skills and policy: every change a new version with
a diff, written with an audit event."""

import pytest

from playbooks.models import HygienePolicy, PlaybookVersion, Strategy
from playbooks.policy import policy_update
from playbooks.services import (
    playbook_create_checked,
    playbook_update,
    strategy_edit,
    strategy_move,
    strategy_retire,
)
from playbooks.skills import skill_create, skill_update
from playbooks.versions import (
    PlaybookError,
    content_diff,
    playbook_rollback,
    skill_rollback,
)
from review.models import AuditEvent
from tests.factories import NamespaceFactory, make_playbook, make_strategy

pytestmark = pytest.mark.django_db


@pytest.fixture
def ns():
    return NamespaceFactory(slug="acme")


@pytest.fixture
def playbook(ns):
    return make_playbook(ns, "airline")


def test_create_checked_refuses_duplicates_and_bad_fields(ns):
    """A taken slug, a bad slug, scope or mode are refused naming the field."""
    playbook_create_checked(namespace=ns, slug="airline", actor="admin")
    for kwargs, field in [
        ({"slug": "airline"}, "slug"),
        ({"slug": "Bad Slug"}, "slug"),
        ({"slug": "x", "scope": "galaxy"}, "scope"),
        ({"slug": "y", "mode": "yolo"}, "mode"),
    ]:
        with pytest.raises(PlaybookError) as info:
            playbook_create_checked(namespace=ns, actor="admin", **kwargs)
        assert info.value.field == field
    assert AuditEvent.objects.filter(action="playbook_create").count() == 1


def test_edit_retire_and_move_each_make_a_version_with_diff(ns, playbook):
    """Adding, editing, moving and retiring strategies each produce the next version;
    the diffs name what was added, changed and removed."""
    a = make_strategy(playbook, "Alpha.")
    b = make_strategy(playbook, "Beta.", type="harmful")
    _, v4 = strategy_edit(
        playbook=playbook,
        strategy_id=a.pk,
        actor="admin",
        description="Alpha, revised.",
        confidence=0.9,
    )
    assert v4.number == 4
    assert v4.diff["changed"][0]["fields"]["description"] == {
        "from": "Alpha.",
        "to": "Alpha, revised.",
    }
    v5 = strategy_move(playbook=playbook, strategy_id=b.pk, to_index=0, actor="admin")
    assert [c["description"] for c in v5.content] == ["Beta.", "Alpha, revised."]
    v6 = strategy_retire(playbook=playbook, strategy_id=b.pk, actor="admin")
    assert [r["id"] for r in v6.diff["removed"]] == [b.pk]
    assert [c["id"] for c in v6.content] == [a.pk]
    playbook.refresh_from_db()
    assert playbook.current_version == 6
    assert (
        AuditEvent.objects.filter(target_type="playbook", target_id="airline").count()
        == 5
    )


def test_edit_without_change_or_of_other_playbook_is_refused(ns, playbook):
    """An edit that changes nothing makes no version; another playbook's strategy is
    not found."""
    a = make_strategy(playbook, "Alpha.")
    with pytest.raises(PlaybookError, match="Nothing changed"):
        strategy_edit(
            playbook=playbook, strategy_id=a.pk, actor="x", description="Alpha."
        )
    other = make_playbook(ns, "retail")
    with pytest.raises(PlaybookError) as info:
        strategy_retire(playbook=other, strategy_id=a.pk, actor="x")
    assert info.value.code == "not_found"
    playbook.refresh_from_db()
    assert playbook.current_version == 2


def test_rollback_creates_new_version_equal_to_the_chosen_one(ns, playbook):
    """Rolling back to version n creates a new version whose content equals n's and
    makes the live strategies match it (retired ones come back, later ones go)."""
    a = make_strategy(playbook, "Alpha.")
    make_strategy(playbook, "Beta.")
    snapshot_v3 = PlaybookVersion.objects.get(playbook=playbook, number=3).content
    strategy_edit(
        playbook=playbook, strategy_id=a.pk, actor="x", description="Alpha 2."
    )
    strategy_retire(playbook=playbook, strategy_id=a.pk, actor="x")
    make_strategy(playbook, "Gamma.")

    version = playbook_rollback(playbook=playbook, number=3, actor="admin")

    assert version.number == 7
    assert version.change_kind == "rollback" and version.rolled_back_to == 3
    assert version.content == snapshot_v3
    live = list(
        Strategy.objects.filter(playbook=playbook, active=True)
        .order_by("position")
        .values_list("description", flat=True)
    )
    assert live == ["Alpha.", "Beta."]
    assert [r["description"] for r in version.diff["removed"]] == ["Gamma."]
    back = playbook_rollback(playbook=playbook, number=1, actor="admin")
    assert back.content == [] and back.number == 8
    with pytest.raises(PlaybookError):
        playbook_rollback(playbook=playbook, number=99, actor="admin")


def test_content_diff_matches_by_key():
    """Same key with changed fields is a change, not a remove plus an add."""
    old = [
        {"key": "k1", "id": 1, "type": "helpful", "description": "a", "position": 0},
        {"key": "k2", "id": 2, "type": "helpful", "description": "b", "position": 1},
    ]
    new = [
        {"key": "k1", "id": 1, "type": "helpful", "description": "a!", "position": 0},
        {"key": "k3", "id": 3, "type": "harmful", "description": "c", "position": 1},
    ]
    diff = content_diff(old, new)
    assert [i["key"] for i in diff["added"]] == ["k3"]
    assert [i["key"] for i in diff["removed"]] == ["k2"]
    assert diff["changed"][0]["fields"] == {"description": {"from": "a", "to": "a!"}}


def test_settings_update_is_audited_and_validated(playbook):
    """Mode and threshold changes are validated and audited (no content version)."""
    playbook_update(
        playbook=playbook, actor="admin", mode="background", auto_apply_threshold=0.7
    )
    playbook.refresh_from_db()
    assert (playbook.mode, playbook.auto_apply_threshold, playbook.current_version) == (
        "background",
        0.7,
        1,
    )
    assert AuditEvent.objects.get(action="playbook_settings").data["diff"]["mode"] == {
        "from": "propose",
        "to": "background",
    }
    with pytest.raises(PlaybookError) as info:
        playbook_update(playbook=playbook, actor="admin", auto_apply_threshold=2)
    assert info.value.field == "auto_apply_threshold"


def test_skill_versions_and_rollback(ns):
    """Skill edits are versions with unified diffs; rollback restores the text."""
    skill = skill_create(namespace=ns, slug="rebook", text="one\n", actor="admin")
    v2 = skill_update(skill=skill, text="one\ntwo\n", actor="admin")
    assert v2.number == 2 and "+two" in v2.diff
    v3 = skill_rollback(skill=skill, number=1, actor="admin")
    skill.refresh_from_db()
    assert (v3.number, skill.text, skill.current_version) == (3, "one\n", 3)
    with pytest.raises(PlaybookError):
        skill_create(namespace=ns, slug="rebook", actor="admin")


def test_policy_update_cleans_lists_and_audits_the_diff(ns):
    """Policy lists are trimmed and de-duplicated; the audit row carries before/after."""
    policy_update(
        namespace=ns,
        actor="admin",
        denied_tools=[" rm ", "rm", "curl"],
        egress_allowlist="api.example.com, *.airline.test",
    )
    policy = HygienePolicy.objects.get(namespace=ns)
    assert policy.denied_tools == ["rm", "curl"]
    assert policy.egress_allowlist == ["api.example.com", "*.airline.test"]
    event = AuditEvent.objects.get(action="policy_edit")
    assert event.data["diff"]["denied_tools"] == {"from": [], "to": ["rm", "curl"]}
    with pytest.raises(PlaybookError) as info:
        policy_update(namespace=ns, actor="admin", denied_tools=[1])
    assert info.value.field == "denied_tools"
