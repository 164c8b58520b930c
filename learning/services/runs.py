"""Writes for runs: ingest (idempotent, atomic, redacted), steps, completion, feedback."""

import time
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone

try:
    from psycopg.types.json import Jsonb
except ImportError:  # SQLite-only installs never take the COPY path
    Jsonb = None

from learning.models import (
    Feedback,
    Namespace,
    RunStatus,
    Step,
    Trajectory,
)
from learning.services.redaction import redact_text, redact_value
from learning.services.reflection import (
    run_score_drop_handle,
    runs_reflection_decide,
)
from learning.services.scoring import effective_score_compute, relearning_priority

RUN_FIELDS = (
    "external_id",
    "agent",
    "user_id",
    "session_id",
    "task_description",
    "task_type",
    "status",
    "success_score",
    "error_message",
    "duration_ms",
    "tokens_used",
    "cost_usd",
    "metrics",
    "playbook_versions",
    "started_at",
    "completed_at",
)


@dataclass
class IngestResult:
    run: Trajectory
    created: bool
    # A created run's steps as stored (index, field values): the API answers a single
    # post from these instead of reading back what it just wrote.
    steps: list[dict] | None = None


def _redacted_steps(steps: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    total, out = 0, []
    for step in steps:
        step = dict(step)
        step["description"], n1 = redact_text(step.get("description", ""))
        step["result"], n2 = redact_value(step.get("result"))
        total += n1 + n2
        out.append(step)
    return out, total


StepRow = tuple[uuid.UUID, int, dict[str, Any]]  # (run id, index, field values)


def _build_run(
    *, namespace: Namespace, agent: str, data: dict[str, Any]
) -> tuple[Trajectory, list[StepRow]]:
    values = {
        key: data[key] for key in RUN_FIELDS if key in data and data[key] is not None
    }
    if not values.get("agent"):  # missing or blank: the caller's (the token's) name
        values["agent"] = agent
    values["task_description"], n_task = redact_text(values.get("task_description", ""))
    values["error_message"], n_err = redact_text(values.get("error_message", ""))
    if "metrics" in values:
        values["metrics"], n_metrics = redact_value(values["metrics"])
    else:
        n_metrics = 0
    steps, n_steps = _redacted_steps(data.get("steps") or [])
    redactions = n_task + n_err + n_metrics + n_steps
    run = Trajectory(
        id=uuid.uuid4(),
        namespace=namespace,
        redacted=redactions > 0,
        redaction_count=redactions,
        **values,
    )
    if run.status != RunStatus.RUNNING:
        run.completed_at = run.completed_at or timezone.now()
        run.effective_score = run.success_score
    step_rows = [(run.id, i, _step_values(step)) for i, step in enumerate(steps)]
    return run, step_rows


def _step_values(step: dict[str, Any]) -> dict[str, Any]:
    keys = ("type", "description", "result", "tool", "tokens", "started_at", "ended_at")
    values = {key: step[key] for key in keys if step.get(key) is not None}
    values.setdefault("tool", "")
    return values


def runs_ingest(
    *, namespace: Namespace, agent: str, runs: list[dict[str, Any]]
) -> list[IngestResult]:
    """Store validated runs with their steps; a run whose external_id this namespace
    already posted is returned as it is (``created=False``), never duplicated.

    All rows go in one transaction. Duplicates are settled by the database's unique
    constraint (INSERT … ON CONFLICT DO NOTHING), so concurrent posts of one run store
    it once.
    """
    built = [_build_run(namespace=namespace, agent=agent, data=data) for data in runs]
    # Within one batch, the first occurrence of an external_id wins.
    first_by_external: dict[str, Trajectory] = {}
    unique_runs: list[Trajectory] = []
    for run, _steps in built:
        if run.external_id is None:
            unique_runs.append(run)
        elif run.external_id not in first_by_external:
            first_by_external[run.external_id] = run
            unique_runs.append(run)
    # Every batch takes its unique-index locks in the same order, so batches that
    # share external_ids in different orders wait for each other, never deadlock.
    unique_runs.sort(key=lambda r: (r.external_id is None, r.external_id or "", r.id))
    for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                return _runs_store(namespace, built, unique_runs, first_by_external)
        except OperationalError as exc:
            # Inside an outer transaction the atomic block above is a savepoint, which
            # a deadlock error rolls back cleanly: retrying is safe either way.
            if not _is_deadlock(exc):
                raise
            if attempt == DEADLOCK_ATTEMPTS:
                raise IngestBusy() from exc
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


DEADLOCK_ATTEMPTS = 3


class IngestBusy(Exception):
    """The database kept refusing the write (deadlocks under contention): the client
    should retry shortly; nothing was stored."""

    retry_after = 1


def _is_deadlock(exc: Exception) -> bool:
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) == "40P01" or "deadlock" in str(exc).lower()


def _runs_store(namespace, built, unique_runs, first_by_external) -> list[IngestResult]:
    Trajectory.objects.bulk_create(unique_runs, ignore_conflicts=True)
    ids = [run.id for run in unique_runs]
    created_ids = set(
        Trajectory.objects.filter(id__in=ids).values_list("id", flat=True)
    )
    now = timezone.now()
    _steps_insert(
        [
            step
            for run, run_steps in built
            if run.id in created_ids
            for step in run_steps
        ],
        now=now,
    )
    missing = [
        run.external_id
        for run in unique_runs
        if run.id not in created_ids and run.external_id is not None
    ]
    existing = {
        run.external_id: run
        for run in Trajectory.objects.filter(
            namespace=namespace, external_id__in=missing
        )
    }
    results: list[IngestResult] = []
    for run, run_steps in built:
        if run.id in created_ids:
            steps = [
                {"index": i, "created_at": now, **values}
                for _id, i, values in run_steps
            ]
            results.append(IngestResult(run=run, created=True, steps=steps))
            continue
        winner = first_by_external.get(run.external_id)
        if winner is not None and winner.id in created_ids:
            results.append(IngestResult(run=winner, created=False))
        else:
            results.append(IngestResult(run=existing[run.external_id], created=False))
    finished = [
        r.run for r in results if r.created and r.run.status != RunStatus.RUNNING
    ]
    if finished:
        runs_reflection_decide(runs=finished)
    return results


STEP_COPY_COLUMNS = (
    "trajectory_id",
    "index",
    "type",
    "description",
    "result",
    "tool",
    "tokens",
    "started_at",
    "ended_at",
    "created_at",
)


def _steps_insert(rows: list[StepRow], *, now) -> None:
    """Insert new steps: COPY on PostgreSQL (ingest's hot path: no model instances),
    bulk_create elsewhere. `now` is their created_at."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        Step.objects.bulk_create(
            [
                Step(trajectory_id=run_id, index=i, created_at=now, **values)
                for run_id, i, values in rows
            ],
            batch_size=2000,
        )
        return
    sql = f"COPY {Step._meta.db_table} ({', '.join(STEP_COPY_COLUMNS)}) FROM STDIN"
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for run_id, index, v in rows:
            result = v.get("result")
            copy.write_row(
                (
                    run_id,
                    index,
                    v["type"],
                    v["description"],
                    None if result is None else Jsonb(result),
                    v["tool"],
                    v.get("tokens"),
                    v.get("started_at"),
                    v.get("ended_at"),
                    now,
                )
            )


def run_steps_append(*, run: Trajectory, steps: list[dict[str, Any]]) -> list[Step]:
    """Append steps to a running run, atomically, after the last stored step."""
    steps, redactions = _redacted_steps(steps)
    with transaction.atomic():
        locked = Trajectory.objects.select_for_update().get(pk=run.pk)
        if locked.status != RunStatus.RUNNING:
            raise RunNotRunning(locked.status)
        last = locked.steps.order_by("-index").values_list("index", flat=True).first()
        start = 0 if last is None else last + 1
        rows = Step.objects.bulk_create(
            [
                Step(trajectory=locked, index=start + i, **_step_values(step))
                for i, step in enumerate(steps)
            ]
        )
        if redactions:
            _redactions_note(locked, redactions)
            locked.save(update_fields=["redacted", "redaction_count", "updated_at"])
    return rows


def _redactions_note(run: Trajectory, count: int) -> None:
    """Record on the run (unsaved) that `count` more secrets were masked."""
    if count:
        run.redacted = True
        run.redaction_count += count


class RunNotRunning(Exception):
    def __init__(self, status: str):
        super().__init__(f"the run is already finished (status '{status}')")
        self.status = status


def run_complete(*, run: Trajectory, data: dict[str, Any]) -> Trajectory:
    """Finish a running run with its outcome; the reflection decision follows."""
    with transaction.atomic():
        locked = Trajectory.objects.select_for_update().get(pk=run.pk)
        if locked.status != RunStatus.RUNNING:
            raise RunNotRunning(locked.status)
        for key in (
            "status",
            "success_score",
            "duration_ms",
            "tokens_used",
            "cost_usd",
            "playbook_versions",
        ):
            if data.get(key) is not None:
                setattr(locked, key, data[key])
        if data.get("error_message"):
            locked.error_message, n = redact_text(data["error_message"])
            _redactions_note(locked, n)
        if data.get("metrics"):
            metrics, n = redact_value(data["metrics"])
            locked.metrics = {**locked.metrics, **metrics}
            _redactions_note(locked, n)
        locked.completed_at = timezone.now()
        locked.effective_score = _effective_score(locked)
        locked.save()
        runs_reflection_decide(runs=[locked])
    return locked


def _effective_score(run: Trajectory, strategy: str | None = None) -> float | None:
    feedback = list(
        run.feedback.order_by("created_at", "id").values_list("feedback_type", "score")
    )
    return effective_score_compute(
        success_score=run.success_score, feedback=feedback, strategy=strategy
    )


def feedback_add(
    *, run: Trajectory, data: dict[str, Any]
) -> tuple[Feedback, Trajectory]:
    """Record feedback and recompute the effective score. Feedback that departs from
    the run's own score by more than the threshold marks the run for relearning."""
    with transaction.atomic():
        locked = Trajectory.objects.select_for_update().get(pk=run.pk)
        message, _n = redact_text(data.get("message", ""))
        metrics, _m = redact_value(data.get("metrics") or {})
        feedback = Feedback.objects.create(
            trajectory=locked,
            feedback_type=data["feedback_type"],
            score=data["score"],
            source=data.get("source", ""),
            message=message,
            metrics=metrics,
        )
        previous = locked.effective_score
        locked.effective_score = _effective_score(locked)
        reference = (
            locked.success_score if locked.success_score is not None else previous
        )
        fields = ["effective_score", "updated_at"]
        if reference is not None:
            delta = feedback.score - reference
            if abs(delta) > settings.FLYWHEEL_RELEARN_THRESHOLD:
                locked.needs_relearning = True
                locked.relearning_priority = max(
                    locked.relearning_priority, relearning_priority(delta)
                )
                fields += ["needs_relearning", "relearning_priority"]
        locked.save(update_fields=fields)
        if (
            previous is not None
            and locked.effective_score is not None
            and locked.effective_score < previous
            and locked.status != RunStatus.RUNNING
        ):
            run_score_drop_handle(run=locked, previous=previous)
    return feedback, locked


# --- writes for adapters whose deliveries repeat and arrive out of order (OTLP) ------

IDENTITY_FIELDS = {
    "task_description": Trajectory._meta.get_field("task_description"),
    "task_type": Trajectory._meta.get_field("task_type"),
    "session_id": Trajectory._meta.get_field("session_id"),
    "user_id": Trajectory._meta.get_field("user_id"),
    "agent": Trajectory._meta.get_field("agent"),
}


def run_identity_update(*, run: Trajectory, data: dict[str, Any]) -> Trajectory:
    """Set what a running run is about — task, task type, session, user, agent, start
    — from validated values that arrived after it was created (an OTLP trace's agent
    span comes after its children). Text is redacted like ingest's; absent or empty
    values keep what is stored."""
    with transaction.atomic():
        locked = Trajectory.objects.select_for_update().get(pk=run.pk)
        if locked.status != RunStatus.RUNNING:
            raise RunNotRunning(locked.status)
        fields = ["updated_at"]
        for key, model_field in IDENTITY_FIELDS.items():
            if data.get(key):
                value, n = redact_text(data[key])
                setattr(locked, key, value[: model_field.max_length])
                _redactions_note(locked, n)
                fields.append(key)
        if data.get("started_at"):
            locked.started_at = data["started_at"]
            fields.append("started_at")
        locked.save(update_fields=[*fields, "redacted", "redaction_count"])
    return locked


def run_steps_attach(
    *, run: Trajectory, steps: list[dict[str, Any]], key: str
) -> list[Step]:
    """Append validated steps that the caller identifies by ``result[key]`` (OTLP: the
    span id), skipping those the run already holds, so a retried delivery never
    duplicates a step. Unlike `run_steps_append`, a finished run takes them too: a
    span that ends after its trace's agent span is still part of the run."""
    with transaction.atomic():
        locked = Trajectory.objects.select_for_update().get(pk=run.pk)
        keys = [step["result"][key] for step in steps]
        stored = set(
            locked.steps.filter(**{f"result__{key}__in": keys}).values_list(
                f"result__{key}", flat=True
            )
        )
        new = []
        for step in steps:
            if step["result"][key] not in stored:
                stored.add(step["result"][key])
                new.append(step)
        if not new:
            return []
        new, redactions = _redacted_steps(new)
        last = locked.steps.order_by("-index").values_list("index", flat=True).first()
        start = 0 if last is None else last + 1
        rows = Step.objects.bulk_create(
            [
                Step(trajectory=locked, index=start + i, **_step_values(step))
                for i, step in enumerate(new)
            ]
        )
        if redactions:
            _redactions_note(locked, redactions)
            locked.save(update_fields=["redacted", "redaction_count", "updated_at"])
    return rows


def feedback_add_once(
    *, run: Trajectory, data: dict[str, Any], key: str
) -> tuple[Feedback | None, Trajectory]:
    """`feedback_add`, unless the run already holds feedback whose ``metrics[key]``
    equals this one's (where an adapter's feedback came from: OTLP's trace, span and
    evaluation): a retried delivery is one feedback. Answers ``(None, run)`` then."""
    origin, _n = redact_value(data["metrics"][key])
    with transaction.atomic():
        locked = Trajectory.objects.select_for_update().get(pk=run.pk)
        if locked.feedback.filter(**{f"metrics__{key}": origin}).exists():
            return None, locked
        return feedback_add(run=locked, data=data)
