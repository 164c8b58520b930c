"""Reflecting a set of runs in one task: the same peers, candidates and evidence as run
by run, in a number of queries that does not grow with the loading (steps, peers)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from learning.models import LearningCandidate, ReflectionStatus, Trajectory
from learning.reflectors.offline import OfflineReflector
from learning.services import reflection as reflection_services
from learning.services.reflection import (
    peer_pools,
    peers_for,
    run_reflect,
    runs_reflect,
)
from tests.factories import NamespaceFactory, StepFactory, TrajectoryFactory
from tests.learning.test_pipeline import FAILED_STEPS

pytestmark = pytest.mark.django_db

SUCCESS_STEPS = [
    ("message", "", "user: Please change reservation 4WQ150 to the 18:00 flight."),
    (
        "tool_call",
        "search_direct_flight",
        'search_direct_flight({"origin": "JFK", "destination": "SFO"})',
    ),
    ("observation", "", "HAT031 available at 18:00"),
    (
        "tool_call",
        "update_reservation_flights",
        'update_reservation_flights({"reservation_id": "4WQ150", "cabin": "economy"})',
    ),
]


def _run(namespace, steps, n, **kwargs):
    run = TrajectoryFactory(
        namespace=namespace,
        task_type="airline.change_flight",
        task_description=f"Change reservation 4WQ15{n % 3} to the evening flight",
        **kwargs,
    )
    for i, (type_, tool, text) in enumerate(steps):
        StepFactory(trajectory=run, index=i, type=type_, tool=tool, description=text)
    return run


def _fleet(namespace, failures: int, successes: int = 6) -> list:
    for n in range(successes):
        _run(namespace, SUCCESS_STEPS, n, status="success", success_score=1.0)
    return [
        _run(
            namespace,
            FAILED_STEPS,
            n,
            status="failure",
            success_score=0.0,
            reflection_status="pending",
        ).pk
        for n in range(failures)
    ]


def _outcome(namespace) -> list:
    return sorted(
        LearningCandidate.objects.filter(namespace=namespace).values_list(
            "kind", "content", "evidence_count"
        )
    )


def test_a_set_makes_what_run_by_run_makes():
    """The same failures reflected as one set and one by one give the same
    candidates with the same evidence counts, and every run ends reflected."""
    together, alone = NamespaceFactory(), NamespaceFactory()
    ids = _fleet(together, 5)
    summary = runs_reflect(run_ids=ids)
    assert summary == {"reflected": 5, "failed": 0, "handed_back": 0}
    for run_id in _fleet(alone, 5):
        run_reflect(run_id=run_id)
    assert _outcome(together) and _outcome(together) == _outcome(alone)
    assert set(
        Trajectory.objects.filter(pk__in=ids).values_list(
            "reflection_status", "reflection_attempts"
        )
    ) == {(ReflectionStatus.REFLECTED, 1)}
    assert runs_reflect(run_ids=ids)["reflected"] == 0  # no longer pending


def test_the_peer_pool_gives_each_run_its_own_peers():
    """One pool per task type hands each run exactly the peers `peers_for` loads:
    the same task first (at most 20), then the newest, never the run itself."""
    namespace = NamespaceFactory()
    for n in range(45):
        _run(namespace, SUCCESS_STEPS[:1], n, status="success", success_score=1.0)
    runs = [
        Trajectory.objects.get(pk=pk)
        for pk in _fleet(namespace, 4, successes=0)
        + list(
            Trajectory.objects.filter(
                namespace=namespace, status="success"
            ).values_list("pk", flat=True)[:2]
        )
    ]
    pools = peer_pools(runs)
    for run in runs:
        assert [p.pk for p in pools[run.pk]] == [p.pk for p in peers_for(run=run)]
        assert run.pk not in {p.pk for p in pools[run.pk]}


def _set_queries(failures: int) -> tuple[int, int]:
    namespace = NamespaceFactory()
    ids = _fleet(namespace, failures)
    reflection_services._peer_views.clear()
    with CaptureQueriesContext(connection) as queries:
        runs_reflect(run_ids=ids)
    steps = [q for q in queries.captured_queries if 'FROM "learning_step"' in q["sql"]]
    return len(queries), len(steps)


def test_a_set_loads_steps_and_peers_once(django_assert_max_num_queries):
    """The runs' steps load in one query and the peers' in one, whatever the size of
    the set; the rest is the storing of each run's reflection and candidates."""
    small, small_steps = _set_queries(3)
    large, large_steps = _set_queries(9)
    assert small_steps == large_steps == 2
    per_run = (large - small) / 6
    namespace = NamespaceFactory()
    ids = _fleet(namespace, 6)
    reflection_services._peer_views.clear()
    with django_assert_max_num_queries(int(small + 3 * per_run) + 1):
        runs_reflect(run_ids=ids)
    # The set is stored as a set: no query is repeated per run.
    assert per_run == 0, per_run


def _store_queries(failures: int) -> dict:
    namespace = NamespaceFactory()
    ids = _fleet(namespace, failures)
    reflection_services._peer_views.clear()
    with CaptureQueriesContext(connection) as queries:
        runs_reflect(run_ids=ids)
    sql = [q["sql"] for q in queries.captured_queries]
    return {
        "locks": sum("pg_advisory_xact_lock" in q for q in sql),
        "fingerprint": sum('"fingerprint" IN' in q for q in sql),
        "evidence": sum('INTO "learning_candidateevidence"' in q for q in sql),
        "candidates": sum('INTO "learning_learningcandidate"' in q for q in sql),
        "total": len(sql),
        "made": LearningCandidate.objects.filter(namespace=namespace).count(),
    }


def test_a_set_of_runs_looks_fingerprints_up_once():
    """Candidates and evidence of a set are written as a set: one fingerprint lock
    and one look-up of the pending candidates, one insert of candidates and one of
    evidence, whether the set holds 2 runs or 8."""
    small, large = _store_queries(2), _store_queries(8)
    assert small["made"] and small["made"] == large["made"]
    for key in ("locks", "fingerprint", "evidence", "candidates"):
        assert small[key] == large[key] == 1, (key, small, large)
    assert small["total"] == large["total"], (small, large)


def test_one_failing_run_does_not_stop_the_set(monkeypatch):
    """A run whose reflection raises keeps its error (still pending, attempt counted);
    the other runs of the set are reflected."""
    namespace = NamespaceFactory()
    ids = _fleet(namespace, 3)
    real = OfflineReflector.reflect

    def flaky(self, *, run, peers):
        if str(run.id) == str(ids[1]):
            raise RuntimeError("reflector exploded")
        return real(self, run=run, peers=peers)

    monkeypatch.setattr(OfflineReflector, "reflect", flaky)
    assert runs_reflect(run_ids=ids) == {"reflected": 2, "failed": 1, "handed_back": 0}
    bad = Trajectory.objects.get(pk=ids[1])
    assert bad.reflection_status == ReflectionStatus.PENDING
    assert "exploded" in bad.reflection_error and bad.reflection_attempts == 1


def test_a_set_past_its_budget_hands_the_rest_to_a_new_task(monkeypatch):
    """Past the time budget a set reflects no further run: the rest go back to the
    queue with their attempt uncounted (sync mode here runs each at once), and every
    run still ends reflected after exactly one attempt."""
    monkeypatch.setattr(reflection_services, "set_budget_seconds", lambda: -1.0)
    namespace = NamespaceFactory()
    ids = _fleet(namespace, 3)
    summary = runs_reflect(run_ids=ids)
    assert summary["reflected"] == 1 and summary["handed_back"] == 2
    assert set(
        Trajectory.objects.filter(pk__in=ids).values_list(
            "reflection_status", "reflection_attempts"
        )
    ) == {(ReflectionStatus.REFLECTED, 1)}


def test_a_large_set_is_split(monkeypatch):
    """A set larger than SET_SIZE is split into tasks of at most SET_SIZE."""
    monkeypatch.setattr(reflection_services, "SET_SIZE", 2)
    namespace = NamespaceFactory()
    ids = _fleet(namespace, 5)
    assert runs_reflect(run_ids=ids)["reflected"] == 2
    assert not Trajectory.objects.filter(
        pk__in=ids, reflection_status=ReflectionStatus.PENDING
    ).exists()


def test_a_set_task_audits_its_candidates_itself(
    monkeypatch, django_capture_on_commit_callbacks
):
    """The candidates a set makes are audited by the same task once it commits: no
    audit task goes through the broker (one hop less before a candidate is audited)."""
    sent = []
    monkeypatch.setattr(
        "django_q.tasks.async_task", lambda func, *a, **kw: sent.append(func)
    )
    namespace = NamespaceFactory()
    ids = _fleet(namespace, 3)
    with django_capture_on_commit_callbacks(execute=True):
        runs_reflect(run_ids=ids)
    made = LearningCandidate.objects.filter(namespace=namespace)
    assert made.exists()
    assert not made.filter(audited_at__isnull=True).exists()
    assert not [f for f in sent if "audit" in str(f)], sent


def test_a_single_run_task_audits_its_candidates_itself(
    monkeypatch, django_capture_on_commit_callbacks
):
    """A run posted alone is reflected by its own task, which audits the candidates it
    made once it commits, as a set task does: no audit task through the broker."""
    sent = []
    monkeypatch.setattr(
        "django_q.tasks.async_task", lambda func, *a, **kw: sent.append(func)
    )
    namespace = NamespaceFactory()
    ids = _fleet(namespace, 1)
    with django_capture_on_commit_callbacks(execute=True):
        run_reflect(run_id=ids[0])
    made = LearningCandidate.objects.filter(namespace=namespace)
    assert made.exists()
    assert not made.filter(audited_at__isnull=True).exists()
    assert not [f for f in sent if "audit" in str(f)], sent
