"""Training exports for parametric learning: SFT examples, preference pairs, RL episodes.

Each export is a stream of JSON-serialisable records (one JSONL line each), read in
chunks so a large namespace never sits in memory:

- ``sft``: finished successful runs at or above ``min_score`` (effective score, default
  0.8) as chat-format examples (``{"messages": [...]}`` with OpenAI-style tool calls);
- ``preferences``: for each task (same task type and description), the best
  successful run paired with the worst failed one, … (``{"prompt", "chosen",
  "rejected"}``, the shape DPO trainers take), when the chosen one scores higher;
- ``episodes``: every finished run with its steps and the effective score as reward.

Run content was redacted on ingest; each record is redacted again on the way out, so
text stored before a pattern existed (or written by hand) cannot leak through an export.
"""

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from datetime import timezone as dt_timezone
from typing import Any

from django.db.models import F, Prefetch, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from learning.models import Namespace, RunStatus, Step, Trajectory
from learning.services.payloads import FieldError, datetime_check
from learning.services.redaction import redact_value

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("sft", "preferences", "episodes")
DEFAULT_MIN_SCORE = {"sft": 0.8, "preferences": None, "episodes": None}
CHUNK = 200
SYSTEM_PROMPT = "You are an agent. Complete the user's task using the tools available."
_ROLE_PREFIX = re.compile(r"^(user|assistant|system|tool)\s*:\s*", re.I)
_CALL = re.compile(r"^\s*[\w.\-]+\((.*)\)\s*$", re.S)


class ExportFilterError(ValueError):
    """A filter value is invalid; ``errors`` maps the field to its problem."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class ExportFilters:
    task_type: str = ""
    min_score: float | None = None
    max_score: float | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = None


def _moment(value: str, field: str, *, end_of_day: bool) -> datetime:
    try:
        parsed = parse_datetime(value)
        day = parse_date(value) if parsed is None else None
    except ValueError:  # well formed but impossible, e.g. month 13
        parsed = day = None
    if parsed is None and day is None:
        raise ExportFilterError({field: f"'{value}' is not a date or datetime"})
    if parsed is None:
        parsed = datetime.combine(day, time.max if end_of_day else time.min)
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, dt_timezone.utc)
    try:
        return datetime_check(parsed)
    except FieldError as exc:
        raise ExportFilterError({field: str(exc)}) from exc


MAX_EXPORT_LIMIT = 1_000_000


def _score_param(params: dict, name: str, errors: dict) -> float | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        number = float(raw)
    except (TypeError, ValueError):
        errors[name] = f"'{raw}' is not a number"
        return None
    if not 0.0 <= number <= 1.0:
        errors[name] = "must be between 0 and 1"
    return number


def _limit_param(raw: Any, errors: dict) -> int | None:
    if raw in (None, ""):
        return None
    try:
        limit = int(raw)
    except (TypeError, ValueError, OverflowError):
        errors["limit"] = f"'{raw}' is not an integer"
        return None
    if not 1 <= limit <= MAX_EXPORT_LIMIT:
        errors["limit"] = f"must be an integer from 1 to {MAX_EXPORT_LIMIT}"
    return limit


def export_filters_parse(*, params: dict[str, Any], format: str) -> ExportFilters:
    """Validate filter values (query string or command options) for one format."""
    if format not in EXPORT_FORMATS:
        raise ExportFilterError(
            {"format": f"'{format}' is not one of {', '.join(EXPORT_FORMATS)}"}
        )
    errors: dict[str, str] = {}
    values: dict[str, Any] = {
        "min_score": _score_param(params, "min_score", errors),
        "max_score": _score_param(params, "max_score", errors),
        "task_type": str(params.get("task_type") or ""),
    }
    if values["min_score"] is None and "min_score" not in errors:
        values["min_score"] = DEFAULT_MIN_SCORE[format]
    for name, end in (("since", False), ("until", True)):
        raw = params.get(name)
        if isinstance(raw, (datetime, date)):
            raw = raw.isoformat()
        if raw:
            try:
                values[name] = _moment(str(raw), name, end_of_day=end)
            except ExportFilterError as exc:
                errors.update(exc.errors)
    limit = _limit_param(params.get("limit"), errors)
    if limit is not None:
        values["limit"] = limit
    if errors:
        raise ExportFilterError(errors)
    return ExportFilters(**values)


def _score_expr():
    return Coalesce(F("effective_score"), F("success_score"))


def _finished_runs(
    *, namespace: Namespace, filters: ExportFilters
) -> QuerySet[Trajectory]:
    qs = (
        Trajectory.objects.filter(namespace=namespace)
        .exclude(status=RunStatus.RUNNING)
        .annotate(score=_score_expr())
    )
    if filters.task_type:
        qs = qs.filter(task_type=filters.task_type)
    if filters.since:
        qs = qs.filter(created_at__gte=filters.since)
    if filters.until:
        qs = qs.filter(created_at__lte=filters.until)
    return qs


def _with_steps(qs: QuerySet[Trajectory]) -> QuerySet[Trajectory]:
    return qs.prefetch_related(
        Prefetch("steps", queryset=Step.objects.order_by("index"))
    )


def _score_filtered(
    qs: QuerySet[Trajectory], filters: ExportFilters
) -> QuerySet[Trajectory]:
    if filters.min_score is not None:
        qs = qs.filter(score__gte=filters.min_score)
    if filters.max_score is not None:
        qs = qs.filter(score__lte=filters.max_score)
    return qs


# --- chat conversion -----------------------------------------------------------------


def _arguments(step: Step) -> dict[str, Any]:
    if isinstance(step.result, dict) and isinstance(step.result.get("arguments"), dict):
        return step.result["arguments"]
    match = _CALL.match(step.description or "")
    if match:
        args: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in match.group(1).split(","))):
            key, sep, value = part.partition("=")
            if not sep:
                return {"input": match.group(1)}
            args[key.strip()] = value.strip().strip("'\"")
        return args
    return {"input": step.description}


def _tool_output(step: Step) -> str:
    result = step.result
    if isinstance(result, dict) and "output" in result:
        result = result["output"]
    if result is None:
        return ""
    return result if isinstance(result, str) else json.dumps(result, sort_keys=True)


def run_messages(run: Trajectory) -> list[dict[str, Any]]:
    """A run as chat messages: the task as the first user turn, then its steps
    (``role: text`` messages keep their role; tool calls become an assistant tool call
    and its tool answer; decisions and actions are assistant turns; observations are
    tool output when they follow a call, else user turns)."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": run.task_description},
    ]
    first_user_seen = False
    for step in run.steps.all():
        if step.type == "tool_call":
            call_id = f"call_{run.pk.hex[:8]}_{step.index}"
            messages.append(
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {
                                "name": step.tool or "tool",
                                "arguments": json.dumps(
                                    _arguments(step), sort_keys=True
                                ),
                            },
                        }
                    ],
                }
            )
            messages.append(
                {"role": "tool", "tool_call_id": call_id, "content": _tool_output(step)}
            )
        elif step.type == "message":
            match = _ROLE_PREFIX.match(step.description or "")
            role = match.group(1).lower() if match else "assistant"
            text = step.description[match.end() :] if match else step.description
            if role == "tool":
                role = "user"
            if (
                role == "user"
                and not first_user_seen
                and text.strip() == run.task_description.strip()
            ):
                first_user_seen = True
                continue  # the task is already the first user turn
            messages.append({"role": role, "content": text})
        elif step.type == "observation":
            messages.append(
                {"role": "user", "content": f"Observation: {step.description}"}
            )
        else:  # action, decision
            messages.append({"role": "assistant", "content": step.description})
    return messages


def _metadata(run: Trajectory) -> dict[str, Any]:
    return {
        "run_id": str(run.pk),
        "external_id": run.external_id,
        "task_type": run.task_type,
        "status": run.status,
        "score": run.score,
        "playbook_versions": run.playbook_versions,
    }


def _redacted(record: dict[str, Any]) -> dict[str, Any]:
    return redact_value(record)[0]


# --- formats -------------------------------------------------------------------------


def _sft_records(*, namespace: Namespace, filters: ExportFilters) -> Iterator[dict]:
    qs = _score_filtered(
        _finished_runs(namespace=namespace, filters=filters).filter(
            status=RunStatus.SUCCESS
        ),
        filters,
    ).order_by("created_at", "id")
    qs = _with_steps(qs)
    if filters.limit:
        qs = qs[: filters.limit]
    for run in qs.iterator(chunk_size=CHUNK):
        yield {"messages": run_messages(run), "metadata": _metadata(run)}


def _episode_records(*, namespace: Namespace, filters: ExportFilters) -> Iterator[dict]:
    qs = _score_filtered(_finished_runs(namespace=namespace, filters=filters), filters)
    qs = qs.order_by("created_at", "id")
    qs = _with_steps(qs)
    if filters.limit:
        qs = qs[: filters.limit]
    for run in qs.iterator(chunk_size=CHUNK):
        yield {
            "episode_id": str(run.pk),
            "external_id": run.external_id,
            "task": run.task_description,
            "task_type": run.task_type,
            "status": run.status,
            "reward": run.score,
            "success_score": run.success_score,
            "effective_score": run.effective_score,
            "playbook_versions": run.playbook_versions,
            "duration_ms": run.duration_ms,
            "tokens_used": run.tokens_used,
            "steps": [
                {
                    "index": s.index,
                    "type": s.type,
                    "description": s.description,
                    "tool": s.tool,
                    "result": s.result,
                    "tokens": s.tokens,
                }
                for s in run.steps.all()
            ],
            "messages": run_messages(run),
            "created_at": run.created_at.isoformat(),
        }


def _preference_pairs(*, namespace: Namespace, filters: ExportFilters) -> list[tuple]:
    """Per task (type and description), the best success paired with the worst
    failure, the next best with the next worst, … while the chosen scores higher."""
    base = _finished_runs(namespace=namespace, filters=filters).filter(
        score__isnull=False
    )
    chosen_q = Q(status=RunStatus.SUCCESS)
    if filters.min_score is not None:
        chosen_q &= Q(score__gte=filters.min_score)
    rejected_q = Q(status__in=[RunStatus.FAILURE, RunStatus.PARTIAL])
    if filters.max_score is not None:
        rejected_q &= Q(score__lte=filters.max_score)
    rows = (
        base.filter(chosen_q | rejected_q)
        .values_list("id", "task_type", "task_description", "status", "score")
        .order_by("task_type", "task_description", "created_at", "id")
    )
    groups: dict[tuple[str, str], tuple[list, list]] = {}
    for run_id, task_type, task, status, score in rows.iterator(chunk_size=2000):
        chosen, rejected = groups.setdefault((task_type, task.strip()), ([], []))
        # The query already kept only good-enough successes and bad-enough failures.
        (chosen if status == RunStatus.SUCCESS else rejected).append((score, run_id))
    pairs: list[tuple[Any, Any]] = []
    for chosen, rejected in groups.values():
        chosen.sort(key=lambda item: -item[0])
        rejected.sort(key=lambda item: item[0])
        pairs += [
            (c_id, r_id)
            for (c_score, c_id), (r_score, r_id) in zip(chosen, rejected)
            if c_score > r_score
        ]
    return pairs[: filters.limit] if filters.limit else pairs


def _preference_records(
    *, namespace: Namespace, filters: ExportFilters
) -> Iterator[dict]:
    pairs = _preference_pairs(namespace=namespace, filters=filters)
    for start in range(0, len(pairs), CHUNK):
        chunk = pairs[start : start + CHUNK]
        ids = {i for pair in chunk for i in pair}
        runs = {
            run.pk: run
            for run in _with_steps(
                Trajectory.objects.filter(pk__in=ids).annotate(score=_score_expr())
            )
        }
        for c_id, r_id in chunk:
            chosen_run, rejected_run = runs[c_id], runs[r_id]
            chosen_msgs = run_messages(chosen_run)
            rejected_msgs = run_messages(rejected_run)
            yield {
                "prompt": chosen_msgs[:2],
                "chosen": chosen_msgs[2:],
                "rejected": rejected_msgs[2:],
                "metadata": {
                    "task_type": chosen_run.task_type,
                    "chosen": _metadata(chosen_run),
                    "rejected": _metadata(rejected_run),
                },
            }


_EXPORTERS = {
    "sft": _sft_records,
    "preferences": _preference_records,
    "episodes": _episode_records,
}


def export_records(
    *, namespace: Namespace, format: str, filters: ExportFilters
) -> Iterator[dict[str, Any]]:
    """The records of one export, redacted, in a stable order."""
    if format not in _EXPORTERS:
        raise ExportFilterError(
            {"format": f"'{format}' is not one of {', '.join(EXPORT_FORMATS)}"}
        )
    for record in _EXPORTERS[format](namespace=namespace, filters=filters):
        yield _redacted(record)


class ExportIncomplete(Exception):
    """The export stopped before its last record; the stream's last line says so."""


def export_lines(
    *, namespace: Namespace, format: str, filters: ExportFilters
) -> Iterator[str]:
    """The export as JSONL lines (each ending in a newline).

    A record that cannot be read or rendered (a row the database holds but cannot
    hand back, e.g. a time before year 1 stored before times were checked) never cuts
    the stream at a line boundary, where it would look complete: the last line is
    ``{"error": {...}}`` saying how many records came before, and then the stream
    fails (`ExportIncomplete`: the HTTP response is aborted, the command exits non-zero).
    """
    sent = 0
    try:
        for record in export_records(
            namespace=namespace, format=format, filters=filters
        ):
            yield json.dumps(record, ensure_ascii=False, default=str) + "\n"
            sent += 1
    except Exception as exc:
        logger.exception("%s export of %s stopped after %d", format, namespace, sent)
        error = {
            "error": {
                "code": "export_incomplete",
                "detail": f"The export stopped after {sent} record(s): a record "
                f"could not be read ({exc.__class__.__name__}). This file is "
                "incomplete; the server log names the row.",
                "records": sent,
            }
        }
        yield json.dumps(error) + "\n"
        raise ExportIncomplete(error["error"]["detail"]) from exc
