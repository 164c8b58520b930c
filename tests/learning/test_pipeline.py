"""The reflection pipeline: the sampling decision, queueing on commit, idempotent
reflection, the sweeper after a killed worker, schedules, relearning and batches."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from learning.models import (
    CandidateEvidence,
    LearningCandidate,
    Reflection,
    ReflectionStatus,
    Trajectory,
)
from learning.reflectors.offline import OfflineReflector
from learning.services import reflection as reflection_services
from learning.services.batch import batch_reflect
from learning.services.reflection import (
    reflection_decide,
    reflection_sweep,
    run_reflect,
    success_sample_bucket,
)
from learning.services.relearning import relearning_process, relearning_queue
from learning.services.schedules import SCHEDULES
from tests.factories import NamespaceFactory, StepFactory, TrajectoryFactory

pytestmark = pytest.mark.django_db

FAILED_STEPS = [
    ("message", "", "user: Please change reservation 4WQ150 to the 18:00 flight."),
    (
        "tool_call",
        "update_reservation_flights",
        'update_reservation_flights({"reservation_id": "4WQ150", "cabin": "economy", '
        '"flights": [{"flight_number": "HAT030", "date": "2024-05-13"}], '
        '"payment_id": "credit_card_1"})',
    ),
    ("observation", "", "Error: flight HAT030 not available on date 2024-05-13"),
]


def make_run(steps=FAILED_STEPS, **kwargs):
    kwargs.setdefault("status", "failure")
    kwargs.setdefault("success_score", 0.0)
    run = TrajectoryFactory(**kwargs)
    for i, (type_, tool, text) in enumerate(steps):
        StepFactory(trajectory=run, index=i, type=type_, tool=tool, description=text)
    return run


def run_payload(external_id, status="failure"):
    return {
        "external_id": external_id,
        "task_type": "airline.change_flight",
        "status": status,
        "task_description": "Change reservation 4WQ150 to the evening flight",
        "success_score": 0.0 if status == "failure" else 1.0,
        "user_id": "mia_li_3668",
        "steps": [
            {"type": t, "tool": tool, "description": d}
            if tool
            else {"type": t, "description": d}
            for t, tool, d in FAILED_STEPS
        ],
    }


def test_failures_partials_and_drops_are_always_reflected():
    """Failures and partials are pending; so is a success whose effective score fell."""
    assert reflection_decide(run=TrajectoryFactory.build(status="failure")) == (
        "pending",
        "failure",
    )
    assert (
        reflection_decide(run=TrajectoryFactory.build(status="partial"))[1] == "partial"
    )
    dropped = TrajectoryFactory.build(
        status="success", success_score=1.0, effective_score=0.4
    )
    status, reason = reflection_decide(run=dropped)
    assert status == "pending" and "dropped" in reason


def test_success_sampling_is_a_deterministic_fraction(settings):
    """Successes are sampled by a hash of the run id: the same run always gets the same
    answer, and about the configured fraction is reflected."""
    settings.FLYWHEEL_SUCCESS_SAMPLE_RATE = 0.25
    runs = [TrajectoryFactory.build(status="success") for _ in range(400)]
    decisions = [reflection_decide(run=r)[0] for r in runs]
    assert decisions == [reflection_decide(run=r)[0] for r in runs]
    share = decisions.count("pending") / len(runs)
    assert 0.17 < share < 0.33
    for run, decision in zip(runs, decisions):
        assert (decision == "pending") == (success_sample_bucket(run.id) < 0.25)
    settings.FLYWHEEL_SUCCESS_SAMPLE_RATE = 0.0
    status, reason = reflection_decide(run=runs[0])
    assert status == "skipped" and "not sampled" in reason


def test_posting_a_failed_run_reflects_it_on_commit(
    agent_client, django_capture_on_commit_callbacks
):
    """The API stores the decision with the run, the task runs on commit, and the run's
    JSON shows the outcome; candidates point back at the run and its steps."""
    with django_capture_on_commit_callbacks(execute=True):
        response = agent_client.post_json("/api/v1/runs/", run_payload("tb-1"))
    assert response.status_code == 201
    run_id = response.json()["id"]
    detail = agent_client.get(f"/api/v1/runs/{run_id}/").json()
    assert detail["reflection"]["status"] == "reflected"
    assert detail["reflection"]["reason"] == "failure"
    assert detail["reflection"]["attempts"] == 1
    evidence = CandidateEvidence.objects.filter(trajectory_id=run_id)
    assert evidence.exists()
    lesson = LearningCandidate.objects.get(
        evidence__trajectory_id=run_id, content__contains="not available"
    )
    assert "update_reservation_flights" in lesson.content
    assert lesson.evidence.get().step_indexes == [1, 2]
    assert lesson.reflection.trajectory_id is not None


def test_skipped_success_records_the_reason(
    agent_client, settings, django_capture_on_commit_callbacks
):
    """A success outside the sample is `skipped` with the reason, and nothing is queued."""
    settings.FLYWHEEL_SUCCESS_SAMPLE_RATE = 0.0
    with django_capture_on_commit_callbacks(execute=True):
        body = agent_client.post_json(
            "/api/v1/runs/", run_payload("ok-1", "success")
        ).json()
    assert body["reflection"]["status"] == "skipped"
    assert "not sampled" in body["reflection"]["reason"]
    assert not Reflection.objects.exists()


def test_reflecting_twice_does_not_duplicate(django_capture_on_commit_callbacks):
    """Reflection is idempotent: one Reflection per run, the same candidates, and the
    evidence counted once."""
    run = make_run(reflection_status="pending")
    run_reflect(run_id=run.pk)
    first = sorted(LearningCandidate.objects.values_list("id", "evidence_count"))
    run_reflect(run_id=run.pk, force=True)
    run_reflect(run_id=run.pk)  # no longer pending: a no-op
    assert (
        sorted(LearningCandidate.objects.values_list("id", "evidence_count")) == first
    )
    assert Reflection.objects.filter(trajectory=run).count() == 1
    assert CandidateEvidence.objects.filter(trajectory=run).count() == len(first)


def test_a_killed_worker_leaves_the_run_pending_and_the_sweeper_reflects_it(
    monkeypatch, django_capture_on_commit_callbacks
):
    """A worker that dies mid-task (here: a BaseException escaping the reflector, as a
    SIGKILL would) leaves the run pending with the attempt counted; once the run is
    stale the sweeper re-queues it and the re-run reflects it."""
    run = make_run(reflection_status="pending")

    class Killed(BaseException):
        pass

    def die(self, **kwargs):
        raise Killed()

    monkeypatch.setattr(OfflineReflector, "reflect", die)
    with pytest.raises(Killed):
        run_reflect(run_id=run.pk)
    run.refresh_from_db()
    assert (run.reflection_status, run.reflection_attempts) == ("pending", 1)
    monkeypatch.undo()

    assert (
        reflection_sweep()["requeued"] == 0
    )  # not stale yet: the broker may re-deliver
    later = timezone.now() + reflection_services.stale_after() + timedelta(seconds=1)
    with django_capture_on_commit_callbacks(execute=True):
        summary = reflection_sweep(now=later)
    assert summary["requeued"] == 1
    run.refresh_from_db()
    assert run.reflection_status == "reflected"
    assert run.reflection_attempts == 2
    assert LearningCandidate.objects.filter(evidence__trajectory=run).exists()


def test_a_run_that_keeps_failing_is_marked_failed_with_error_and_attempts(
    monkeypatch, settings
):
    """After the maximum attempts the run is `failed` with the error, never pending
    forever."""
    settings.FLYWHEEL_REFLECTION_MAX_ATTEMPTS = 2
    run = make_run(reflection_status="pending")

    def broken(self, **kwargs):
        raise RuntimeError("reflector exploded")

    monkeypatch.setattr(OfflineReflector, "reflect", broken)
    with pytest.raises(RuntimeError):
        run_reflect(run_id=run.pk)
    run.refresh_from_db()
    assert run.reflection_status == "pending" and "exploded" in run.reflection_error
    with pytest.raises(RuntimeError):
        run_reflect(run_id=run.pk)
    run.refresh_from_db()
    assert run.reflection_status == "failed"
    assert run.reflection_attempts == 2
    assert "RuntimeError: reflector exploded" in run.reflection_error


def test_the_sweeper_gives_up_on_a_lost_run_and_decides_undecided_ones(
    settings, django_capture_on_commit_callbacks
):
    """A stale pending run that used every attempt is marked failed; a finished run that
    never got a decision gets one."""
    settings.FLYWHEEL_REFLECTION_MAX_ATTEMPTS = 3
    lost = make_run(reflection_status="pending", reflection_attempts=3)
    undecided = make_run(reflection_status="undecided")
    later = timezone.now() + reflection_services.stale_after() + timedelta(seconds=1)
    with django_capture_on_commit_callbacks(execute=True):
        summary = reflection_sweep(now=later)
    assert summary["failed"] == 1 and summary["decided"] == 1
    lost.refresh_from_db()
    undecided.refresh_from_db()
    assert lost.reflection_status == "failed"
    assert "3 attempts" in lost.reflection_error
    assert undecided.reflection_status == "reflected"


def test_a_score_drop_queues_reflection_again(
    agent_client, django_capture_on_commit_callbacks
):
    """Feedback that lowers a skipped success's effective score makes it pending with the
    reason and reflects it."""
    run = make_run(
        status="success",
        success_score=1.0,
        reflection_status="skipped",
        namespace=agent_client.namespace,
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = agent_client.post_json(
            f"/api/v1/runs/{run.pk}/feedback/", {"feedback_type": "human", "score": 0.0}
        )
    assert response.status_code == 201
    run.refresh_from_db()
    assert run.reflection_status == "reflected"
    assert "dropped" in run.reflection_reason


def test_setup_schedules_is_idempotent():
    """Running the command twice leaves one schedule per name, including the playbook
    tasks referenced by dotted path."""
    call_command("setup_schedules")
    Schedule.objects.filter(name="flywheel-relearning").update(minutes=99)
    call_command("setup_schedules")
    names = list(Schedule.objects.values_list("name", flat=True))
    assert sorted(names) == sorted(SCHEDULES)
    assert Schedule.objects.get(name="flywheel-relearning").minutes == 10
    funcs = set(Schedule.objects.values_list("func", flat=True))
    assert {
        "playbooks.tasks.playbooks_curate",
        "playbooks.tasks.memories_consolidate",
        "playbooks.tasks.quality_gate_evaluate",
        "learning.tasks.reflection_sweep_task",
    } <= funcs


def test_relearning_goes_by_priority_then_effective_score():
    """The queue re-reflects the highest priority first; ties go to the lower effective
    score; processed runs leave the queue."""
    ns = NamespaceFactory()
    low = make_run(
        namespace=ns, needs_relearning=True, relearning_priority=3, effective_score=0.1
    )
    high_b = make_run(
        namespace=ns, needs_relearning=True, relearning_priority=8, effective_score=0.6
    )
    high_a = make_run(
        namespace=ns, needs_relearning=True, relearning_priority=8, effective_score=0.2
    )
    make_run(namespace=ns, needs_relearning=False)
    assert list(relearning_queue(namespace=ns)) == [high_a, high_b, low]
    result = relearning_process(limit=2, namespace=ns)
    assert result["relearned"] == [str(high_a.pk), str(high_b.pk)]
    assert list(relearning_queue(namespace=ns)) == [low]
    assert Reflection.objects.filter(trajectory=high_a).exists()
    assert not Reflection.objects.filter(trajectory=low).exists()
    high_a.refresh_from_db()
    assert high_a.reflection_status == "reflected"
    assert high_a.reflection_reason == "relearning (priority 8, effective score 0.20)"


def test_batch_reflection_reports_patterns_with_frequencies():
    """A batch over a task type keeps the lessons found in several runs, with how many,
    and its candidates carry every run as evidence."""
    ns = NamespaceFactory()
    runs = [
        make_run(namespace=ns, task_description=f"Change reservation R{i}")
        for i in range(3)
    ]
    make_run(
        namespace=ns,
        steps=[("message", "", "user: hello")],
        status="success",
        success_score=1.0,
    )
    batch = batch_reflect(namespace_id=ns.pk, task_type="airline.change_flight")
    assert batch.is_batch and batch.batch_runs.count() == 4
    # Learned from a failure, the lesson is advice (polarity "do"): a helpful strategy.
    pattern = next(
        p
        for p in batch.helpful_strategies + batch.harmful_patterns
        if "not available" in p["description"]
    )
    assert pattern["frequency"] == 3
    candidate = LearningCandidate.objects.get(
        reflection=batch, content__contains="not available"
    )
    assert set(candidate.evidence.values_list("trajectory_id", flat=True)) == {
        r.pk for r in runs
    }
    assert "3 of 4" in candidate.rationale
    assert (
        Trajectory.objects.filter(reflection_status=ReflectionStatus.FAILED).count()
        == 0
    )


def test_due_batches_are_queued_once_per_new_runs(settings):
    """The schedule batch-reflects a task type once it has enough new finished runs, and
    not again until enough newer runs arrive."""
    from learning.services.batch import batch_reflect_due

    settings.FLYWHEEL_BATCH_MIN_RUNS = 3
    ns = NamespaceFactory()
    for i in range(3):
        make_run(namespace=ns, task_description=f"Change reservation R{i}")
    make_run(namespace=ns, task_type="airline.book", status="running")
    assert batch_reflect_due()["queued"] == [f"{ns.pk}:airline.change_flight"]
    assert (
        Reflection.objects.filter(is_batch=True).count() == 1
    )  # sync mode: ran inline
    assert batch_reflect_due()["queued"] == []


def test_completing_a_running_run_records_the_decision(
    agent_client, django_capture_on_commit_callbacks
):
    """A run posted running has no decision; completing it as partial makes it pending
    and the task reflects it."""
    payload = {k: v for k, v in run_payload("live-1").items() if k != "status"}
    created = agent_client.post_json("/api/v1/runs/", payload).json()
    assert created["reflection"]["status"] == "undecided"
    with django_capture_on_commit_callbacks(execute=True):
        done = agent_client.post_json(
            f"/api/v1/runs/{created['id']}/complete/",
            {"status": "partial", "success_score": 0.5},
        )
    assert done.status_code == 200
    run = Trajectory.objects.get(pk=created["id"])
    assert (run.reflection_status, run.reflection_reason) == ("reflected", "partial")


def test_reflect_runs_command_reflects_pending_runs_without_a_worker():
    run = make_run(reflection_status="pending")
    call_command("reflect_runs")
    run.refresh_from_db()
    assert run.reflection_status == "reflected"
    with pytest.raises(Exception, match="--namespace"):
        call_command("reflect_runs", "--batch", "airline")
