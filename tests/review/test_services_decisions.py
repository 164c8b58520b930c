"""Reopen, undo, group decisions, canned reasons and tags, guidelines, and editing a
lesson's shape (review/services.py), on the real apply path (playbooks.apply)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from learning.models import CandidateEvidence, LearningCandidate
from playbooks.models import Memory, PlaybookVersion, Strategy
from review import selectors, services
from review.models import AuditEvent, CannedReason, Guideline, ReviewTag
from tests.factories import (
    CandidateFactory,
    NamespaceFactory,
    TrajectoryFactory,
    make_playbook,
)
from tests.review.conftest import make_user

pytestmark = pytest.mark.django_db

RITA = services.Actor(label="rita")
OTTO = services.Actor(label="otto")


def actions(candidate) -> list[str]:
    return list(
        AuditEvent.objects.filter(candidate=candidate)
        .order_by("created_at", "id")
        .values_list("action", flat=True)
    )


def approve(namespace, candidate, actor=RITA, **kwargs):
    return services.candidate_approve(
        namespace=namespace, candidate_id=candidate.pk, actor=actor, **kwargs
    )


# --- reopen ---------------------------------------------------------------------------


def test_reopen_puts_a_denied_candidate_back_and_keeps_the_old_decision(acme):
    c = CandidateFactory(namespace=acme)
    services.candidate_deny(namespace=acme, candidate_id=c.pk, actor=OTTO, note="vague")
    reopened = services.candidate_reopen(
        namespace=acme, candidate_id=c.pk, actor=RITA, note="second look"
    )
    c.refresh_from_db()
    assert c.status == "pending" == reopened.status
    assert c.decided_by == "" and c.decision_note == "" and c.decided_at is None
    event = AuditEvent.objects.get(candidate=c, action="reopen")
    assert (event.actor, event.from_status, event.to_status) == (
        "rita",
        "denied",
        "pending",
    )
    assert event.note == "second look"
    assert event.data["previous"]["decided_by"] == "otto"
    assert event.data["previous"]["decision_note"] == "vague"
    assert actions(c) == ["deny", "reopen"]


def test_reopen_of_an_applied_strategy_reverts_it_in_a_new_version(acme):
    """An applied candidate is reverted through the versioned path: a new playbook
    version without its strategy, then pending again — and it can be approved and
    reopened again (each time the latest application is the one reverted)."""
    pb = make_playbook(acme, "airline")
    c = CandidateFactory(namespace=acme, playbook=pb)
    approve(acme, c)
    c.refresh_from_db()
    assert c.status == "applied" and c.applied_version == 2
    assert Strategy.objects.filter(playbook=pb, active=True).count() == 1

    services.candidate_reopen(namespace=acme, candidate_id=c.pk, actor=RITA)
    c.refresh_from_db()
    pb.refresh_from_db()
    assert c.status == "pending" and c.applied_version is None
    assert pb.current_version == 3
    assert PlaybookVersion.objects.get(playbook=pb, number=3).reverts.number == 2
    assert not Strategy.objects.filter(playbook=pb, active=True).exists()
    event = AuditEvent.objects.get(candidate=c, action="reopen")
    assert event.data["revert"]["version"] == 3
    assert event.data["previous"]["applied_version"] == 2
    assert actions(c)[0] == "approve" and actions(c)[-2:] == ["revert", "reopen"]

    approve(acme, c)
    c.refresh_from_db()
    assert c.status == "applied" and c.applied_version == 4
    assert Strategy.objects.filter(playbook=pb, active=True).count() == 1
    services.candidate_reopen(namespace=acme, candidate_id=c.pk, actor=RITA)
    pb.refresh_from_db()
    assert pb.current_version == 5
    assert not Strategy.objects.filter(playbook=pb, active=True).exists()


def test_reopen_of_an_applied_memory_retires_it(acme):
    c = CandidateFactory(
        namespace=acme,
        kind="preference",
        content="Prefers aisle seats on every flight.",
        memory_scope="user",
        user_id="u-1",
    )
    approve(acme, c)
    memory = Memory.objects.get(source_candidate=c)
    assert memory.active
    services.candidate_reopen(namespace=acme, candidate_id=c.pk, actor=RITA)
    memory.refresh_from_db()
    assert not memory.active
    assert LearningCandidate.objects.get(pk=c.pk).status == "pending"


def test_a_revert_that_cannot_be_made_leaves_the_decision_as_it_was(acme):
    """An applied candidate whose version record is gone cannot be reverted: the
    reopen is refused and nothing changes (one transaction)."""
    pb = make_playbook(acme, "airline")
    c = CandidateFactory(namespace=acme, playbook=pb)
    approve(acme, c)
    PlaybookVersion.objects.filter(candidate=c).update(candidate=None)
    with pytest.raises(services.ReviewError, match="Cannot reopen candidate"):
        services.candidate_reopen(namespace=acme, candidate_id=c.pk, actor=RITA)
    c.refresh_from_db()
    assert c.status == "applied"
    assert "reopen" not in actions(c) and "revert" not in actions(c)


@pytest.mark.parametrize("status", ["pending", "apply_failed", "approved"])
def test_only_decided_candidates_can_be_reopened(acme, status):
    c = CandidateFactory(namespace=acme, status=status)
    with pytest.raises(services.ReviewError, match=f"is {status}"):
        services.candidate_reopen(namespace=acme, candidate_id=c.pk, actor=RITA)


def test_reopen_stays_in_its_namespace(acme):
    other = CandidateFactory(namespace=NamespaceFactory(slug="else"), status="denied")
    with pytest.raises(LearningCandidate.DoesNotExist):
        services.candidate_reopen(namespace=acme, candidate_id=other.pk, actor=RITA)


# --- undo -----------------------------------------------------------------------------


def test_undo_reopens_my_recent_decisions_only(acme):
    """Undo takes back the actor's own decisions of the last seconds; one decided by
    someone else, one too old and one still open are left alone and counted."""
    mine = CandidateFactory.create_batch(2, namespace=acme)
    for c in mine:
        services.candidate_deny(
            namespace=acme, candidate_id=c.pk, actor=RITA, note="no"
        )
    theirs = CandidateFactory(namespace=acme)
    services.candidate_deny(
        namespace=acme, candidate_id=theirs.pk, actor=OTTO, note="x"
    )
    old = CandidateFactory(
        namespace=acme,
        status="denied",
        decided_by="rita",
        decided_at=timezone.now() - timedelta(minutes=5),
    )
    open_ = CandidateFactory(namespace=acme)
    outcome = services.candidates_undo(
        candidate_ids=[c.pk for c in mine] + [theirs.pk, old.pk, open_.pk],
        actor=RITA,
    )
    assert sorted(outcome.reopened) == sorted(c.pk for c in mine)
    assert outcome.skipped == {
        "decided by someone else": [theirs.pk],
        "too late to undo: reopen it": [old.pk],
        "is pending": [open_.pk],
    }
    assert "Undone: 2 back in the queue" in outcome.summary()
    statuses = dict(LearningCandidate.objects.values_list("pk", "status"))
    assert [statuses[c.pk] for c in mine] == ["pending", "pending"]
    assert statuses[theirs.pk] == statuses[old.pk] == "denied"
    assert AuditEvent.objects.filter(action="reopen", note="undo").count() == 2


def test_undo_of_an_approval_reverts_what_it_applied(acme):
    pb = make_playbook(acme, "airline")
    c = CandidateFactory(namespace=acme, playbook=pb)
    approve(acme, c)
    outcome = services.candidates_undo(candidate_ids=[c.pk], actor=RITA)
    assert outcome.reopened == [c.pk]
    assert not Strategy.objects.filter(playbook=pb, active=True).exists()
    assert LearningCandidate.objects.get(pk=c.pk).status == "pending"


def test_undo_after_the_window_is_refused(acme):
    c = CandidateFactory(namespace=acme)
    services.candidate_deny(namespace=acme, candidate_id=c.pk, actor=RITA, note="no")
    later = timezone.now() + timedelta(seconds=services.UNDO_SECONDS + 1)
    outcome = services.candidates_undo(candidate_ids=[c.pk], actor=RITA, now=later)
    assert outcome.reopened == []
    assert LearningCandidate.objects.get(pk=c.pk).status == "denied"


# --- group decisions ------------------------------------------------------------------


def _near_identical(namespace, playbook, n=3):
    rows = []
    for i in range(n):
        c = CandidateFactory(
            namespace=namespace,
            playbook=playbook,
            content="Before calling book_reservation, compute the total price "
            "with calculate",
        )
        CandidateEvidence.objects.create(
            candidate=c, trajectory=TrajectoryFactory(namespace=namespace)
        )
        c.evidence_count = 1
        c.save(update_fields=["evidence_count"])
        rows.append(c)
    return rows


def test_group_approval_applies_one_strategy_with_all_the_evidence(acme):
    pb = make_playbook(acme, "airline")
    leader, *members = _near_identical(acme, pb)
    decided, member_ids = services.candidates_group_decide(
        namespace=acme,
        leader_id=leader.pk,
        member_ids=[m.pk for m in members],
        actor=RITA,
        decision="approve",
        note="same lesson",
    )
    assert decided.status == "applied" and sorted(member_ids) == [m.pk for m in members]
    assert Strategy.objects.filter(playbook=pb, active=True).count() == 1
    leader.refresh_from_db()
    assert leader.evidence_count == 3 and leader.evidence.count() == 3
    for m in members:
        m.refresh_from_db()
        assert (m.status, m.superseded_by_id, m.decided_by) == (
            "superseded",
            leader.pk,
            "rita",
        )
        assert actions(m) == ["supersede"]


def test_group_denial_denies_each_with_the_note(acme):
    pb = make_playbook(acme, "airline")
    leader, *members = _near_identical(acme, pb)
    services.candidates_group_decide(
        namespace=acme,
        leader_id=leader.pk,
        member_ids=[m.pk for m in members],
        actor=RITA,
        decision="deny",
        note="run-specific",
    )
    rows = LearningCandidate.objects.filter(
        pk__in=[leader.pk, *[m.pk for m in members]]
    )
    assert {(r.status, r.decision_note) for r in rows} == {("denied", "run-specific")}
    assert AuditEvent.objects.filter(action="deny").count() == 3


def test_a_refused_leader_decides_nothing_of_its_group(acme):
    """A blocked leader without an admin's override: no member is superseded."""
    pb = make_playbook(acme, "airline")
    leader, *members = _near_identical(acme, pb)
    LearningCandidate.objects.filter(pk=leader.pk).update(max_severity="block")
    with pytest.raises(services.NeedsOverride):
        services.candidates_group_decide(
            namespace=acme,
            leader_id=leader.pk,
            member_ids=[m.pk for m in members],
            actor=RITA,
            decision="approve",
        )
    with pytest.raises(services.NeedsOverride, match="Only an admin"):
        services.candidates_group_decide(
            namespace=acme,
            leader_id=leader.pk,
            member_ids=[m.pk for m in members],
            actor=RITA,
            decision="approve",
            override=True,
        )
    assert set(LearningCandidate.objects.values_list("status", flat=True)) == {
        "pending"
    }
    assert not AuditEvent.objects.exists()


def test_group_members_decided_meanwhile_or_not_alike_are_left_alone(acme):
    """Members someone decided meanwhile, and ids that are not near-identical to the
    leader (a stale or hand-made group), are not decided with it."""
    pb = make_playbook(acme, "airline")
    leader, member, taken = _near_identical(acme, pb)
    services.candidate_deny(
        namespace=acme, candidate_id=taken.pk, actor=OTTO, note="dup"
    )
    unrelated = CandidateFactory(
        namespace=acme, playbook=pb, content="Ask for the user id first."
    )
    _, decided = services.candidates_group_decide(
        namespace=acme,
        leader_id=leader.pk,
        member_ids=[member.pk, taken.pk, unrelated.pk],
        actor=RITA,
        decision="approve",
    )
    assert decided == [member.pk]
    assert LearningCandidate.objects.get(pk=taken.pk).decided_by == "otto"
    assert LearningCandidate.objects.get(pk=unrelated.pk).status == "pending"


def test_undo_of_a_group_approval_puts_the_whole_group_back(acme):
    """Undoing a group approval reverts the leader and gives the members back their
    own row (pending, not merged, their evidence no longer counted on the leader)."""
    pb = make_playbook(acme, "airline")
    leader, *members = _near_identical(acme, pb)
    _, member_ids = services.candidates_group_decide(
        namespace=acme,
        leader_id=leader.pk,
        member_ids=[m.pk for m in members],
        actor=RITA,
        decision="approve",
    )
    outcome = services.candidates_undo(
        candidate_ids=[leader.pk, *member_ids], actor=RITA
    )
    assert sorted(outcome.reopened) == sorted([leader.pk, *member_ids])
    assert outcome.skipped == {}
    assert not Strategy.objects.filter(playbook=pb, active=True).exists()
    for c in [leader, *members]:
        c.refresh_from_db()
        assert c.status == "pending" and c.superseded_by_id is None
        assert c.evidence_count == 1 and c.evidence.count() == 1


def test_group_decision_refuses_unknown_decisions(acme):
    c = CandidateFactory(namespace=acme)
    with pytest.raises(services.ReviewError, match="Unknown decision"):
        services.candidates_group_decide(
            namespace=acme, leader_id=c.pk, member_ids=[], actor=RITA, decision="x"
        )


# --- canned reasons, tags, guidelines -------------------------------------------------


def test_deny_with_a_canned_reason_records_it_and_its_tags(acme):
    specific = services.review_tag_save(
        namespace=acme, actor="ada", slug="run-specific"
    )
    vague = services.review_tag_save(namespace=acme, actor="ada", slug="vague")
    reason = services.canned_reason_save(
        namespace=acme,
        actor="ada",
        text="Names one run's ids",
        tags=["run-specific"],
    )
    c = CandidateFactory(namespace=acme)
    labels = services.decision_labels(
        namespace=acme, reason_id=reason.pk, tags=["vague"]
    )
    services.candidate_deny(
        namespace=acme, candidate_id=c.pk, actor=RITA, labels=labels
    )
    c.refresh_from_db()
    assert c.status == "denied" and c.decision_note == "Names one run's ids"
    event = AuditEvent.objects.get(candidate=c, action="deny")
    assert event.data["reason"] == reason.pk
    assert set(event.tags.all()) == {specific, vague}
    counts = selectors.decision_labels_counts(user=make_user("ada", acme, "admin"))
    assert counts["reasons"] == [{"reason": reason, "n": 1}]
    assert {t.slug: t.n for t in counts["tags"]} == {"run-specific": 1, "vague": 1}


def test_labels_of_another_namespace_retired_or_unknown_are_refused(acme):
    other = NamespaceFactory(slug="else")
    foreign = services.canned_reason_save(namespace=other, actor="x", text="Foreign")
    retired = services.canned_reason_save(namespace=acme, actor="ada", text="Old")
    services.canned_reason_save(
        namespace=acme, actor="ada", text="Old", reason_id=retired.pk, active=False
    )
    services.review_tag_save(namespace=other, actor="x", slug="theirs")
    for reason_id in (foreign.pk, retired.pk):
        with pytest.raises(services.ReviewError, match=f"No canned reason {reason_id}"):
            services.decision_labels(namespace=acme, reason_id=reason_id)
    with pytest.raises(services.ReviewError, match="Unknown tag 'theirs'"):
        services.decision_labels(namespace=acme, tags=["theirs"])


def test_reason_and_tag_changes_are_audited_and_checked(acme):
    services.review_tag_save(namespace=acme, actor="ada", slug="Wrong Polarity")
    assert ReviewTag.objects.get().slug == "wrong-polarity"
    reason = services.canned_reason_save(
        namespace=acme, actor="ada", text="  Too   vague ", tags=["wrong-polarity"]
    )
    assert reason.text == "Too vague"
    services.canned_reason_save(
        namespace=acme, actor="ada", text="Vague", reason_id=reason.pk, active=False
    )
    reason.refresh_from_db()
    assert (reason.text, reason.active, list(reason.tags.all())) == ("Vague", False, [])
    edit = AuditEvent.objects.get(action="reason_edit")
    assert edit.data["before"] == {"text": "Too vague", "active": True}
    assert edit.data["after"]["active"] is False
    with pytest.raises(services.ReviewError, match="needs its text"):
        services.canned_reason_save(namespace=acme, actor="ada", text="  ")
    with pytest.raises(services.ReviewError, match="at most 500"):
        services.canned_reason_save(namespace=acme, actor="ada", text="x" * 501)
    with pytest.raises(services.ReviewError, match="needs a name"):
        services.review_tag_save(namespace=acme, actor="ada", slug="!!")
    services.review_tag_delete(namespace=acme, actor="ada", slug="wrong-polarity")
    with pytest.raises(services.ReviewError, match="No tag 'wrong-polarity'"):
        services.review_tag_delete(namespace=acme, actor="ada", slug="wrong-polarity")
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
        "tag_create",
        "reason_create",
        "reason_edit",
        "tag_delete",
    ]


def test_a_reason_of_another_namespace_cannot_be_changed(acme):
    theirs = services.canned_reason_save(
        namespace=NamespaceFactory(slug="else"), actor="x", text="Theirs"
    )
    with pytest.raises(services.ReviewError, match="No canned reason"):
        services.canned_reason_save(
            namespace=acme, actor="ada", text="Mine", reason_id=theirs.pk
        )
    assert CannedReason.objects.get(pk=theirs.pk).text == "Theirs"


def test_guidelines_are_replaced_with_before_and_after(acme):
    services.guideline_update(namespace=acme, actor="ada", text="# Rules\nBe strict.")
    services.guideline_update(namespace=acme, actor="ada", text="# Rules\nBe strict.")
    services.guideline_update(namespace=acme, actor="bo", text="Be kind.")
    g = Guideline.objects.get(namespace=acme)
    assert (g.text, g.updated_by) == ("Be kind.", "bo")
    events = list(AuditEvent.objects.filter(action="guideline_edit").order_by("id"))
    assert len(events) == 2  # the unchanged save wrote nothing
    assert events[1].data == {
        "before": {"text": "# Rules\nBe strict."},
        "after": {"text": "Be kind."},
    }
    with pytest.raises(services.ReviewError, match="at most 20000"):
        services.guideline_update(namespace=acme, actor="ada", text="x" * 20001)
    assert Guideline.objects.get(namespace=acme).text == "Be kind."


# --- editing the lesson's shape -------------------------------------------------------


def test_changing_the_polarity_renders_the_text_from_the_shape(acme):
    c = CandidateFactory(
        namespace=acme,
        content="When the user asks for a refund, check the fare rules first.",
    )
    services.candidate_edit(
        namespace=acme, candidate_id=c.pk, actor=RITA, changes={"content": c.content}
    )
    edited = services.candidate_edit(
        namespace=acme,
        candidate_id=c.pk,
        actor=RITA,
        changes={"polarity": "avoid", "directive": "refund before reading them"},
    )
    assert edited.polarity == "avoid" and not edited.shape_classified
    # The situation read from the text is kept: only what was changed changes.
    assert edited.content == (
        "When the user asks for a refund, do not refund before reading them."
    )
    event = AuditEvent.objects.get(candidate=c, action="edit")
    assert event.data["before"]["content"] == c.content
    assert event.data["after"]["polarity"] == "avoid"
    assert "content" in event.data["after"]


def test_changing_the_kind_to_a_memory_drops_the_shape_and_scopes_it(acme):
    pb = make_playbook(acme, "airline")
    c = CandidateFactory(namespace=acme, playbook=pb, user_id="u-7")
    edited = services.candidate_edit(
        namespace=acme, candidate_id=c.pk, actor=RITA, changes={"kind": "preference"}
    )
    assert edited.kind == "preference" and edited.memory_scope == "user"
    assert edited.directive == "" and edited.polarity == ""


def test_edit_refuses_a_bad_polarity_or_kind(acme):
    c = CandidateFactory(namespace=acme)
    with pytest.raises(services.ReviewError, match="'do' or 'avoid'"):
        services.candidate_edit(
            namespace=acme, candidate_id=c.pk, actor=RITA, changes={"polarity": "no"}
        )
    with pytest.raises(services.ReviewError, match="cannot become a patch_skill"):
        services.candidate_edit(
            namespace=acme,
            candidate_id=c.pk,
            actor=RITA,
            changes={"kind": "patch_skill"},
        )
    patch = CandidateFactory(namespace=acme, kind="patch_skill")
    with pytest.raises(services.ReviewError, match="skill patch cannot become"):
        services.candidate_edit(
            namespace=acme,
            candidate_id=patch.pk,
            actor=RITA,
            changes={"kind": "procedure"},
        )
    assert not AuditEvent.objects.exists()


# --- progress and agreement -----------------------------------------------------------


def test_progress_counts_today_per_reviewer_and_agreement_after_reopen(acme):
    rita = make_user("rita", acme)
    a, b, c = CandidateFactory.create_batch(3, namespace=acme)
    services.candidate_deny(namespace=acme, candidate_id=a.pk, actor=OTTO, note="no")
    services.candidate_reopen(namespace=acme, candidate_id=a.pk, actor=RITA)
    services.candidate_deny(namespace=acme, candidate_id=a.pk, actor=RITA, note="no")
    services.candidate_mark_conflicted(namespace=acme, candidate_id=b.pk, actor=OTTO)
    services.candidate_reopen(namespace=acme, candidate_id=b.pk, actor=RITA)
    services.candidate_deny(namespace=acme, candidate_id=b.pk, actor=RITA, note="no")
    progress = selectors.review_progress(user=rita)
    assert progress["today"] == 4
    per = {
        row["actor"]: (row["today"], row["deny"], row["conflict"])
        for row in progress["reviewers"]
    }
    assert per == {"rita": (2, 2, 0), "otto": (2, 1, 1)}
    agreement = progress["agreement"]
    assert (agreement["pairs"], agreement["agreed"], agreement["rate"]) == (2, 1, 0.5)
    assert agreement["disagreements"] == [(b.pk, "otto", "conflict", "rita", "deny")]
    assert c.status == "pending"


def test_a_new_directive_alone_keeps_the_polarity_the_form_showed(acme):
    """A lesson read from its text ("Never …": avoid) whose directive alone is
    rewritten stays `avoid`: the new directive is not parsed as a fresh lesson."""
    c = CandidateFactory(namespace=acme, content="Never rebook basic economy fares.")
    edited = services.candidate_edit(
        namespace=acme,
        candidate_id=c.pk,
        actor=RITA,
        changes={"directive": "rebook a basic economy fare"},
    )
    assert edited.polarity == "avoid"
    assert edited.content == "Do not rebook a basic economy fare."


def test_reopening_a_merged_candidate_takes_it_back_out(acme):
    """A candidate the audit merged into a near-identical one (superseded) can be
    reopened: pending again, its evidence no longer counted on the survivor."""
    pb = make_playbook(acme, "airline")
    survivor, newer = _near_identical(acme, pb, n=2)
    services.candidate_supersede(newer=newer, survivor=survivor)
    survivor.refresh_from_db()
    assert survivor.evidence_count == 2
    services.candidate_reopen(namespace=acme, candidate_id=newer.pk, actor=RITA)
    survivor.refresh_from_db()
    newer.refresh_from_db()
    assert (newer.status, newer.superseded_by_id) == ("pending", None)
    assert survivor.evidence_count == 1 and survivor.evidence.count() == 1
    reopen = AuditEvent.objects.get(candidate=newer, action="reopen")
    assert reopen.data["revert"] == {
        "unmerged_from": survivor.pk,
        "evidence_removed": 1,
    }
