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
from learning.services.redaction import redact_fields, redact_text, redact_value
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


# Every text a client sends about a run, and its column's length: all of it is
# redacted (a key pasted into a user id or a tool name is as stored as one in a task).
RUN_TEXT_FIELDS = {
    name: getattr(Trajectory._meta.get_field(name), "max_length", None)
    for name in (
        "agent",
        "user_id",
        "session_id",
        "task_description",
        "task_type",
        "error_message",
        "playbook_versions",
    )
}
STEP_TEXT_FIELDS = {
    "description": None,
    "tool": Step._meta.get_field("tool").max_length,
}


def _redacted_steps(steps: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    total, out = 0, []
    for step in steps:
        step = dict(step)
        step.setdefault("description", "")
        total += redact_fields(step, STEP_TEXT_FIELDS, max_lengths=STEP_TEXT_FIELDS)
        step["result"], n = redact_value(step.get("result"))
        total += n
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
    values.setdefault("task_description", "")
    n_text = redact_fields(values, RUN_TEXT_FIELDS, max_lengths=RUN_TEXT_FIELDS)
    if "metrics" in values:
        values["metrics"], n_metrics = redact_value(values["metrics"])
    else:
        n_metrics = 0
    steps, n_steps = _redacted_steps(data.get("steps") or [])
    redactions = n_text + n_metrics + n_steps
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
    keys = (
        "type",
        "description",
        "result",
        "tool",
        "tokens",
        "started_at",
        "ended_at",
        "client_id",
    )
    values = {key: step[key] for key in keys if step.get(key) is not None}
    if step.get("step_id"):
        values["client_id"] = step["step_id"]
    values.setdefault("tool", "")
    values.setdefault("client_id", "")
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
    now = timezone.now()
    # SQLite has one write lock for the whole file: every value is adapted before the
    # transaction takes it, which then holds it for the inserts alone.
    prepared = (
        None
        if connection.vendor == "postgresql"
        else _SqliteInserts(
            unique_runs, [row for _run, rows in built for row in rows], now=now
        )
    )
    for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                return _runs_store(
                    namespace, built, unique_runs, first_by_external, now, prepared
                )
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


def _runs_store(  # noqa: PLR0913 - the batch as runs_ingest prepared it
    namespace, built, unique_runs, first_by_external, now, prepared
) -> list[IngestResult]:
    ids = [run.id for run in unique_runs]
    if prepared is None:
        Trajectory.objects.bulk_create(unique_runs, ignore_conflicts=True)
    else:
        prepared.runs_insert()
    created_ids = set(
        Trajectory.objects.filter(id__in=ids).values_list("id", flat=True)
    )
    if prepared is None:
        _steps_insert(
            [
                step
                for run, run_steps in built
                if run.id in created_ids
                for step in run_steps
            ],
            now=now,
        )
    else:
        prepared.steps_insert(created_ids)
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
    "client_id",
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
                    v["client_id"],
                )
            )


class _SqliteInserts:
    """A batch's INSERTs with every value already adapted for the database, executed
    later with `executemany`: building model instances and compiling the statements
    cost ~90% of an ingest transaction of 20 runs (bench/README.md), none of which
    needs the lock. Runs are adapted as `bulk_create` adapts them (`pre_save`,
    `get_db_prep_save` of every field); steps, 20 or more per run, only where the
    database form differs from the validated value (the run id and the timestamp once,
    the JSON result and the client's times through their fields; text and integers
    are stored as validated)."""

    def __init__(self, runs: list[Trajectory], steps: list[StepRow], *, now):
        self.runs = runs
        db = transaction.get_connection()  # the wrapper itself, not the proxy
        fields = [f for f in Trajectory._meta.concrete_fields if not f.generated]
        self.runs_sql = _insert_sql(Trajectory, fields, or_ignore=True)
        self.runs_params = [
            tuple(f.get_db_prep_save(f.pre_save(run, True), db) for f in fields)
            for run in runs
        ]
        field = Step._meta.get_field
        self.steps_sql = _insert_sql(
            Step, [field(name) for name in ("trajectory", "index", *_STEP_VALUES)]
        )
        trajectory, result, started, ended = (
            field(name) for name in ("trajectory", "result", "started_at", "ended_at")
        )
        created = field("created_at").get_db_prep_save(now, db)
        run_keys = {run.id: trajectory.get_db_prep_save(run.id, db) for run in runs}

        def adapted(f, value):
            return None if value is None else f.get_db_prep_save(value, db)

        self.steps = [
            (
                run_id,
                (
                    run_keys[run_id],
                    index,
                    v["type"],
                    v["description"],
                    adapted(result, v.get("result")),
                    v["tool"],
                    v.get("tokens"),
                    adapted(started, v.get("started_at")),
                    adapted(ended, v.get("ended_at")),
                    created,
                    v["client_id"],
                ),
            )
            for run_id, index, v in steps
            if run_id in run_keys
        ]

    def runs_insert(self) -> None:
        with connection.cursor() as cursor:
            cursor.executemany(self.runs_sql, self.runs_params)
        for run in self.runs:  # as bulk_create leaves them
            run._state.adding = False
            run._state.db = connection.alias

    def steps_insert(self, created_ids: set) -> None:
        rows = [params for run_id, params in self.steps if run_id in created_ids]
        if rows:
            with connection.cursor() as cursor:
                cursor.executemany(self.steps_sql, rows)


_STEP_VALUES = STEP_COPY_COLUMNS[2:]  # the columns after trajectory_id and index


def _insert_sql(model, fields, *, or_ignore: bool = False) -> str:
    quote = connection.ops.quote_name
    return (
        f"INSERT {'OR IGNORE ' if or_ignore else ''}INTO "
        f"{quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )


@dataclass
class StepsAppended:
    """What an append answers: the request's steps as stored, in its order, and how
    many of them this call stored (0 for a retry that found them all)."""

    steps: list[Step]
    created: int


def run_steps_append(
    *, run: Trajectory, steps: list[dict[str, Any]], idempotency_key: str = ""
) -> StepsAppended:
    """Append steps to a running run, atomically, after the last stored step.

    Idempotent for steps with a client id — their ``step_id``, or, given an
    Idempotency-Key, ``"<key>#<position in the request>"``: a step the run already
    holds is answered as stored, never stored twice, so a client retrying after a
    timeout (even once the run has finished) gets the first answer again. The run
    row's lock serialises concurrent retries."""
    steps, redactions = _redacted_steps(steps)
    for position, step in enumerate(steps):
        client_id = step.pop("step_id", None) or (
            f"{idempotency_key}#{position}" if idempotency_key else ""
        )
        step["client_id"] = client_id
    client_ids = [step["client_id"] for step in steps if step["client_id"]]
    with transaction.atomic():
        locked = Trajectory.objects.select_for_update().get(pk=run.pk)
        stored = {
            row.client_id: row
            for row in (
                locked.steps.filter(client_id__in=client_ids) if client_ids else ()
            )
        }
        new = [step for step in steps if step["client_id"] not in stored]
        if new and locked.status != RunStatus.RUNNING:
            raise RunNotRunning(locked.status)
        last = locked.steps.order_by("-index").values_list("index", flat=True).first()
        start = 0 if last is None else last + 1
        rows = Step.objects.bulk_create(
            [
                Step(trajectory=locked, index=start + i, **_step_values(step))
                for i, step in enumerate(new)
            ]
        )
        if redactions and new:
            _redactions_note(locked, redactions)
            locked.save(update_fields=["redacted", "redaction_count", "updated_at"])
    created = iter(rows)
    answer = [
        stored[step["client_id"]] if step["client_id"] in stored else next(created)
        for step in steps
    ]
    return StepsAppended(steps=answer, created=len(rows))


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
        ):
            if data.get(key) is not None:
                setattr(locked, key, data[key])
        if data.get("playbook_versions") is not None:
            locked.playbook_versions, n = redact_value(data["playbook_versions"])
            _redactions_note(locked, n)
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


FEEDBACK_TEXT_FIELDS = {
    name: getattr(Feedback._meta.get_field(name), "max_length", None)
    for name in ("source", "message")
}


def feedback_add(
    *, run: Trajectory, data: dict[str, Any]
) -> tuple[Feedback, Trajectory]:
    """Record feedback and recompute the effective score. Feedback that departs from
    the run's own score by more than the threshold marks the run for relearning."""
    with transaction.atomic():
        locked = Trajectory.objects.select_for_update().get(pk=run.pk)
        text = {"source": data.get("source", ""), "message": data.get("message", "")}
        redact_fields(text, FEEDBACK_TEXT_FIELDS, max_lengths=FEEDBACK_TEXT_FIELDS)
        metrics, _m = redact_value(data.get("metrics") or {})
        feedback = Feedback.objects.create(
            trajectory=locked,
            feedback_type=data["feedback_type"],
            score=data["score"],
            metrics=metrics,
            **text,
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
        given = {key: data[key] for key in IDENTITY_FIELDS if data.get(key)}
        _redactions_note(
            locked, redact_fields(given, given, max_lengths=RUN_TEXT_FIELDS)
        )
        for key, value in given.items():
            setattr(locked, key, value)
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
