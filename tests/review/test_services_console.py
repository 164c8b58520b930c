"""Console services: the soft lock, edit before approving, bulk decisions."""

from datetime import timedelta

import pytest
from django.utils import timezone

from learning.models import LearningCandidate
from review import services
from review.models import AuditEvent
from tests.factories import CandidateFactory, NamespaceFactory
from tests.review.conftest import make_user

pytestmark = pytest.mark.django_db

RITA = services.Actor(label="rita")


def test_lease_goes_to_the_first_reviewer_and_others_see_it(acme, reviewer):
    """Opening leases the candidate; a second reviewer does not take an unexpired lease."""
    other = make_user("otto", acme)
    c = CandidateFactory(namespace=acme)
    until = services.candidate_lease(namespace=acme, candidate_id=c.pk, user=reviewer)
    assert until is not None
    assert (
        services.candidate_lease(namespace=acme, candidate_id=c.pk, user=other) is None
    )
    c.refresh_from_db()
    assert c.leased_by == reviewer and c.lease_until == until
    # The holder renews it.
    assert services.candidate_lease(namespace=acme, candidate_id=c.pk, user=reviewer)


def test_expired_lease_is_taken_over_and_release_only_frees_own_lease(acme, reviewer):
    other = make_user("otto", acme)
    c = CandidateFactory(
        namespace=acme,
        leased_by=other,
        lease_until=timezone.now() - timedelta(seconds=1),
    )
    assert services.candidate_lease(namespace=acme, candidate_id=c.pk, user=reviewer)
    assert not services.candidate_release(namespace=acme, candidate_id=c.pk, user=other)
    assert services.candidate_release(namespace=acme, candidate_id=c.pk, user=reviewer)
    c.refresh_from_db()
    assert c.leased_by is None and c.lease_until is None


def test_decided_candidates_are_not_leased(acme, reviewer):
    c = CandidateFactory(namespace=acme, status="denied")
    assert (
        services.candidate_lease(namespace=acme, candidate_id=c.pk, user=reviewer)
        is None
    )


def test_lease_lasts_the_configured_seconds(acme, reviewer, settings):
    settings.FLYWHEEL_LEASE_SECONDS = 42
    c = CandidateFactory(namespace=acme)
    before = timezone.now()
    until = services.candidate_lease(namespace=acme, candidate_id=c.pk, user=reviewer)
    assert timedelta(seconds=41) < until - before <= timedelta(seconds=43)


def test_a_decision_clears_the_lease(acme, reviewer):
    c = CandidateFactory(namespace=acme)
    services.candidate_lease(namespace=acme, candidate_id=c.pk, user=reviewer)
    services.candidate_deny(namespace=acme, candidate_id=c.pk, actor=RITA, note="vague")
    c.refresh_from_db()
    assert c.leased_by is None


def test_edit_records_before_and_after_and_reaudits(
    acme, monkeypatch, django_capture_on_commit_callbacks
):
    """An edit is an `edit` audit event with the changed fields only, and edited text is
    audited again once the edit commits (so an edit cannot slip past hygiene)."""
    from learning import audit_tasks
    from tests.factories import make_playbook

    audited = []
    monkeypatch.setattr(
        audit_tasks,
        "candidate_audit",
        lambda *, candidate: audited.append(candidate.pk) or {},
    )
    playbook = make_playbook(acme, slug="airline")
    c = CandidateFactory(namespace=acme, content="Always check", rationale="r")
    with django_capture_on_commit_callbacks(execute=True):
        edited = services.candidate_edit(
            namespace=acme,
            candidate_id=c.pk,
            actor=RITA,
            note="tighter",
            changes={
                "content": "  Always check the cabin class first ",
                "rationale": "r",
                "playbook": playbook,
            },
        )
    # The text is the rendering of the lesson read from it (learning.lessons).
    assert edited.content == "Always check the cabin class first."
    assert (edited.polarity, edited.directive) == (
        "do",
        "always check the cabin class first",
    )
    assert edited.shape_classified
    assert edited.playbook == playbook
    event = AuditEvent.objects.get(action="edit")
    assert (
        event.actor == "rita" and event.note == "tighter" and event.candidate_id == c.pk
    )
    before, after = event.data["before"], event.data["after"]
    assert (before["content"], before["playbook"]) == ("Always check", None)
    assert after["content"] == "Always check the cabin class first."
    assert after["playbook"] == "airline"
    assert "rationale" not in after  # unchanged fields are not recorded
    assert audited == [c.pk]


def test_edit_without_change_records_nothing(acme):
    c = CandidateFactory(namespace=acme, content="Same")
    services.candidate_edit(
        namespace=acme, candidate_id=c.pk, actor=RITA, changes={"content": "Same"}
    )
    assert not AuditEvent.objects.exists()


def test_edit_refuses_decided_candidates_empty_text_and_foreign_playbooks(acme):
    from tests.factories import make_playbook

    decided = CandidateFactory(namespace=acme, status="applied", decided_by="ada")
    with pytest.raises(services.AlreadyDecided, match="applied by ada"):
        services.candidate_edit(
            namespace=acme,
            candidate_id=decided.pk,
            actor=RITA,
            changes={"content": "x"},
        )
    c = CandidateFactory(namespace=acme)
    with pytest.raises(services.ReviewError, match="empty"):
        services.candidate_edit(
            namespace=acme, candidate_id=c.pk, actor=RITA, changes={"content": "  "}
        )
    foreign = make_playbook(NamespaceFactory(slug="elsewhere"), slug="airline")
    with pytest.raises(services.ReviewError, match="another namespace"):
        services.candidate_edit(
            namespace=acme, candidate_id=c.pk, actor=RITA, changes={"playbook": foreign}
        )
    with pytest.raises(services.ReviewError, match="cannot be edited"):
        services.candidate_edit(
            namespace=acme, candidate_id=c.pk, actor=RITA, changes={"status": "applied"}
        )


def test_bulk_approve_skips_blocked_and_decided_and_says_why(acme, fake_apply):
    clean = CandidateFactory.create_batch(3, namespace=acme)
    blocked = CandidateFactory(namespace=acme, max_severity="block")
    denied = CandidateFactory(namespace=acme, status="denied")
    outcome = services.candidates_bulk_decide(
        candidate_ids=[c.pk for c in clean] + [blocked.pk, denied.pk],
        actor=RITA,
        decision="approve",
        note="batch ok",
    )
    assert sorted(outcome.decided) == sorted(c.pk for c in clean)
    assert outcome.skipped == {
        "already decided": [denied.pk],
        "blocking audit finding (needs an admin override)": [blocked.pk],
    }
    assert (
        "Approved 3" in outcome.summary() and "skipped 1: blocking" in outcome.summary()
    )
    blocked.refresh_from_db()
    assert blocked.status == "pending"
    assert set(
        LearningCandidate.objects.filter(pk__in=[c.pk for c in clean]).values_list(
            "status", flat=True
        )
    ) == {"applied"}
    assert AuditEvent.objects.filter(action="approve", note="batch ok").count() == 3


def test_bulk_approve_counts_apply_failures(acme, monkeypatch):
    from playbooks import apply

    def failing(*, candidate, actor):
        raise apply.ApplyFailed("target missing")

    monkeypatch.setattr(services, "candidate_apply", failing)
    c = CandidateFactory(namespace=acme)
    outcome = services.candidates_bulk_decide(
        candidate_ids=[c.pk], actor=RITA, decision="approve"
    )
    assert outcome.apply_failed == [c.pk] and outcome.decided == []
    assert "1 approved but failed to apply" in outcome.summary()


def test_bulk_deny_needs_one_reason_and_records_it_on_each(acme):
    cs = CandidateFactory.create_batch(2, namespace=acme)
    with pytest.raises(services.NoteRequired):
        services.candidates_bulk_decide(
            candidate_ids=[c.pk for c in cs], actor=RITA, decision="deny", note=" "
        )
    outcome = services.candidates_bulk_decide(
        candidate_ids=[c.pk for c in cs], actor=RITA, decision="deny", note="duplicates"
    )
    assert len(outcome.decided) == 2
    assert set(LearningCandidate.objects.values_list("decision_note", flat=True)) == {
        "duplicates"
    }


def test_bulk_refuses_unknown_decisions(acme):
    with pytest.raises(services.ReviewError):
        services.candidates_bulk_decide(candidate_ids=[], actor=RITA, decision="apply")


def test_an_edit_that_adds_a_secret_is_blocked_by_the_real_audit(
    acme, django_capture_on_commit_callbacks
):
    """The edit goes through the real audits: a credential pasted into the text gets a
    `block` finding, so only an admin override could approve it."""
    c = CandidateFactory(
        namespace=acme, content="Verify the passenger's identity first"
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.candidate_edit(
            namespace=acme,
            candidate_id=c.pk,
            actor=RITA,
            changes={
                "content": "Call the fare API with key AKIAIOSFODNN7EXAMPLE first"
            },
        )
    c.refresh_from_db()
    assert c.audited_at is not None and c.max_severity == "block"
    assert any("secret" in f["message"] for f in c.audit["hygiene"])
    with pytest.raises(services.NeedsOverride):
        services.candidate_approve(namespace=acme, candidate_id=c.pk, actor=RITA)
