"""candidate_create: targets, confidence floors, evidence merging by fingerprint, and
the audit hook."""

import pytest

from learning.lessons import evidence_confidence
from learning.models import LearningCandidate
from learning.services import candidates as candidate_services
from learning.services.candidates import (
    CandidateInvalid,
    EvidenceRef,
    candidate_create,
    candidate_fingerprint,
)
from tests.factories import NamespaceFactory, TrajectoryFactory

pytestmark = pytest.mark.django_db

LESSON = (
    "Call get_reservation_details before update_reservation_flights (seen 3 times)."
)


def test_a_strategy_goes_to_the_task_types_playbook_with_its_evidence():
    ns = NamespaceFactory()
    run = TrajectoryFactory(namespace=ns)
    candidate, created = candidate_create(
        namespace=ns,
        kind="strategy_helpful",
        content=LESSON,
        confidence=0.7,
        task_type="airline.change_flight",
        evidence=[EvidenceRef(run_id=run.pk, step_indexes=[3, 1])],
    )
    assert created and candidate.playbook.slug == "airline"
    assert candidate.evidence_count == 1
    assert candidate.evidence.get().step_indexes == [1, 3]
    assert not candidate.below_floor


def test_below_the_kinds_floor_is_kept_but_flagged(settings):
    settings.FLYWHEEL_CONFIDENCE_FLOORS = {
        **settings.FLYWHEEL_CONFIDENCE_FLOORS,
        "preference": 0.5,
    }
    ns = NamespaceFactory()
    low, _ = candidate_create(
        namespace=ns,
        kind="preference",
        content="Prefers aisle.",
        confidence=0.45,
        user_id="u1",
    )
    high, _ = candidate_create(
        namespace=ns,
        kind="preference",
        content="Prefers window.",
        confidence=0.55,
        user_id="u1",
    )
    assert low.below_floor and not high.below_floor
    assert low.memory_scope == "user" and low.playbook is None


def test_the_same_lesson_again_adds_evidence_instead_of_a_row():
    """Same fingerprint (numbers and case ignored) on a pending candidate: the run is
    added as evidence, counted once however often it is reported."""
    ns = NamespaceFactory()
    first_run, second_run = (
        TrajectoryFactory(namespace=ns),
        TrajectoryFactory(namespace=ns),
    )
    first, _ = candidate_create(
        namespace=ns,
        kind="strategy_harmful",
        content=LESSON,
        task_type="airline",
        confidence=0.6,
        evidence=[EvidenceRef(run_id=first_run.pk, step_indexes=[1])],
    )
    again, created = candidate_create(
        namespace=ns,
        kind="strategy_harmful",
        content=LESSON.replace("3 times", "7 TIMES"),
        task_type="airline",
        confidence=0.6,
        evidence=[EvidenceRef(run_id=second_run.pk, step_indexes=[4])],
    )
    assert not created and again.pk == first.pk
    repeat, _ = candidate_create(
        namespace=ns,
        kind="strategy_harmful",
        content=LESSON,
        task_type="airline",
        confidence=0.6,
        evidence=[EvidenceRef(run_id=second_run.pk, step_indexes=[5])],
    )
    first.refresh_from_db()
    assert LearningCandidate.objects.count() == 1
    assert first.evidence_count == 2
    # More runs, more confidence, by the one rule (learning.lessons).
    assert first.confidence == evidence_confidence(base=0.6, runs=2) > 0.6
    assert first.evidence.get(trajectory=second_run).step_indexes == [4, 5]


def test_a_decided_candidate_is_not_merged_into():
    """Evidence merges only into a pending candidate; a denied one stays as it was."""
    ns = NamespaceFactory()
    denied, _ = candidate_create(
        namespace=ns, kind="strategy_harmful", content=LESSON, task_type="airline"
    )
    LearningCandidate.objects.filter(pk=denied.pk).update(status="denied")
    fresh, created = candidate_create(
        namespace=ns, kind="strategy_harmful", content=LESSON, task_type="airline"
    )
    assert created and fresh.pk != denied.pk


def test_fingerprints_separate_kinds_and_scopes():
    assert candidate_fingerprint(
        kind="preference", key="x 1", scope="memory:user:a:"
    ) != candidate_fingerprint(kind="preference", key="x 1", scope="memory:user:b:")
    assert candidate_fingerprint(
        kind="strategy_helpful", key="Use X, 2 bags"
    ) == candidate_fingerprint(kind="strategy_helpful", key="use x 5 bags")


def test_every_new_candidate_is_handed_to_the_audit(monkeypatch):
    seen = []
    monkeypatch.setattr(
        "learning.services.candidates.candidates_audit_enqueue",
        lambda *, candidates: seen.extend(c.pk for c in candidates),
    )
    ns = NamespaceFactory()
    made, _ = candidate_create(
        namespace=ns, kind="durable_fact", content="User u1 is gold."
    )
    candidate_create(namespace=ns, kind="durable_fact", content="User u1 is gold.")
    assert seen == [made.pk]


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"kind": "wisdom", "content": "x"}, "kind"),
        ({"kind": "preference", "content": "  "}, "content"),
        ({"kind": "preference", "content": "x", "confidence": 1.5}, "confidence"),
    ],
)
def test_bad_input_names_the_field(kwargs, field):
    with pytest.raises(CandidateInvalid) as info:
        candidate_create(namespace=NamespaceFactory(), **kwargs)
    assert info.value.field == field


def test_evidence_runs_must_be_in_the_namespace():
    ns, other = NamespaceFactory(), NamespaceFactory()
    foreign = TrajectoryFactory(namespace=other)
    with pytest.raises(CandidateInvalid) as info:
        candidate_services.runs_in_namespace(namespace=ns, run_ids=[foreign.pk])
    assert info.value.field == "evidence_runs"


@pytest.mark.django_db(transaction=True)
def test_the_same_new_lesson_found_by_two_workers_at_once_is_one_candidate(monkeypatch):
    """Concurrent candidate_create calls with one fingerprint (two workers reflecting
    two runs) make one candidate with both runs as evidence."""
    import threading

    from django.db import connection

    monkeypatch.setattr(
        "learning.services.candidates.candidates_audit_enqueue", lambda **kw: None
    )
    ns = NamespaceFactory()
    runs = [TrajectoryFactory(namespace=ns), TrajectoryFactory(namespace=ns)]
    barrier = threading.Barrier(2)
    errors = []

    def work(run):
        try:
            barrier.wait(timeout=10)
            candidate_create(
                namespace=ns,
                kind="durable_fact",
                content="User u1 is gold.",
                evidence=[EvidenceRef(run_id=run.pk)],
            )
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(r,)) for r in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    (candidate,) = LearningCandidate.objects.filter(namespace=ns)
    assert candidate.evidence_count == 2


def _proposals(runs) -> list[dict]:
    a, b, c = runs
    return [
        {
            "kind": "strategy_helpful",
            "content": LESSON,
            "confidence": 0.6,
            "evidence": [EvidenceRef(run_id=a.pk, step_indexes=[1])],
        },
        {
            "kind": "strategy_helpful",
            "content": LESSON,
            "confidence": 0.7,
            "evidence": [
                EvidenceRef(run_id=b.pk, step_indexes=[2]),
                EvidenceRef(run_id=a.pk, step_indexes=[3]),
            ],
        },
        {
            "kind": "durable_fact",
            "content": "Reservation X1 has a 10 s timeout.",
            "evidence": [EvidenceRef(run_id=c.pk)],
        },
        # Same words, another value: a conflict, stored apart.
        {
            "kind": "durable_fact",
            "content": "Reservation X1 has a 120 s timeout.",
            "evidence": [EvidenceRef(run_id=a.pk)],
        },
        {
            "kind": "strategy_helpful",
            "content": LESSON,
            "confidence": 0.5,
            "evidence": [EvidenceRef(run_id=c.pk, step_indexes=[4])],
        },
    ]


def _outcome(ns) -> list:
    return [
        (
            c.kind,
            c.content,
            c.evidence_count,
            round(c.confidence, 6),
            c.below_floor,
            sorted(
                (str(e.trajectory.external_id), e.step_indexes)
                for e in c.evidence.all()
            ),
        )
        for c in LearningCandidate.objects.filter(namespace=ns).order_by("id")
    ]


def test_a_set_of_proposals_makes_what_one_by_one_makes(django_assert_max_num_queries):
    """`candidates_create` gives the candidates, evidence (merged step indexes),
    counts and confidence that creating the proposals one by one gives, in a number
    of queries that does not depend on the size of the set."""
    one, together = NamespaceFactory(), NamespaceFactory()
    runs_one = [TrajectoryFactory(namespace=one, external_id=f"r{n}") for n in range(3)]
    runs_set = [
        TrajectoryFactory(namespace=together, external_id=f"r{n}") for n in range(3)
    ]
    flags = [
        candidate_create(namespace=one, **proposal)[1]
        for proposal in _proposals(runs_one)
    ]
    candidate_services.candidates_create(
        namespace=together, proposals=_proposals(runs_set)[:1]
    )
    with django_assert_max_num_queries(12):
        made = candidate_services.candidates_create(
            namespace=together, proposals=_proposals(runs_set)[1:]
        )
    assert [True] + [created for _c, created in made] == flags
    assert _outcome(together) == _outcome(one)
    assert len(_outcome(one)) == flags.count(True) >= 2
