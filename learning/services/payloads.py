"""Validation of what agents send in — runs, steps, outcomes, feedback — for every way
in (the REST API, the OTLP adapter, importers, the MCP server). One implementation
with the limits of `learning.limits`; the API's serializers delegate to it, so the
schema they document and the rules applied are the same.

Errors name the field the way the API answers them: ``{"task_description": ["This
field is required."], "steps": {"3": {"type": ["…"]}}}``; a batch nests them under
``{"runs": {"<index>": …}}``. Strings must be strings (``5`` is not a task), numbers
must be finite numbers in their column's range, JSON must be storable by PostgreSQL
(no NUL characters, not nested deeper than MAX_JSON_DEPTH).
"""

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from learning.limits import (
    MAX_AGENT,
    MAX_BIGINT,
    MAX_ERROR_MESSAGE,
    MAX_FEEDBACK_MESSAGE,
    MAX_ID,
    MAX_INT,
    MAX_JSON_DEPTH,
    MAX_PLAYBOOK_VERSIONS,
    MAX_RUNS_PER_BATCH,
    MAX_STEP_DESCRIPTION,
    MAX_STEPS_PER_RUN,
    MAX_TASK_DESCRIPTION,
)
from learning.models import FeedbackType, RunStatus, StepType

REQUIRED = "This field is required."


class PayloadInvalid(Exception):
    """Input that cannot be stored; `errors` names each field and its problem."""

    def __init__(self, errors: dict):
        super().__init__("invalid payload")
        self.errors = errors


class FieldError(ValueError):
    pass


_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why PostgreSQL would refuse this text (or None): a NUL character, or a lone
    surrogate (``\\ud800`` in JSON), which is not Unicode and cannot be encoded."""
    if "\x00" in text:
        return "Null characters are not allowed."
    surrogate = _SURROGATE.search(text)
    if surrogate:
        return (
            f"Lone surrogate \\u{ord(surrogate.group()):04x} at character "
            f"{surrogate.start()} is not valid Unicode."
        )
    return None


def json_problem(value: Any, depth: int = 0) -> str | None:
    """Why PostgreSQL's jsonb would refuse this value (or None)."""
    if depth > MAX_JSON_DEPTH:
        return f"Nested deeper than {MAX_JSON_DEPTH} levels."
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, float):
        return (
            None
            if math.isfinite(value)
            else "NaN and infinite numbers are not allowed."
        )
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((None, item) for item in value)
    else:
        return None
    for key, item in items:
        if key is not None and text_problem(str(key)):
            return text_problem(str(key))
        problem = json_problem(item, depth + 1)
        if problem:
            return problem
    return None


def datetime_parse(value: Any) -> datetime:
    """An aware datetime from ISO 8601 text (naive ones are taken as UTC)."""
    try:
        parsed = parse_datetime(value) if isinstance(value, str) else None
    except ValueError as exc:  # well formed but impossible, e.g. month 13
        raise FieldError(f"must be an ISO 8601 date-time ({exc}).") from exc
    if parsed is None:
        raise FieldError("must be an ISO 8601 date-time.")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)


# --- field rules ----------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    name: str
    required: bool = False
    null: bool = False

    def clean(self, value: Any) -> Any:  # pragma: no cover - every rule overrides it
        raise NotImplementedError

    def take(self, data: dict, out: dict, errors: dict) -> None:
        """Clean `data[name]` into `out`, or record why not in `errors`."""
        if self.name not in data:
            if self.required:
                errors[self.name] = [REQUIRED]
            return
        value = data[self.name]
        if value is None:
            if self.null:
                out[self.name] = None
            else:
                errors[self.name] = ["This field may not be null."]
            return
        try:
            out[self.name] = self.clean(value)
        except FieldError as exc:
            errors[self.name] = [str(exc)]


@dataclass(frozen=True)
class Text(Field):
    max_length: int = MAX_ID
    blank: bool = True
    trim: bool = True

    def clean(self, value):
        if not isinstance(value, str):
            raise FieldError(f"Not a valid string: got {type(value).__name__}.")
        if "\x00" in value:
            raise FieldError("Null characters are not allowed.")
        if self.trim:
            value = value.strip()
        if not value and not self.blank:
            raise FieldError("This field may not be blank.")
        if len(value) > self.max_length:
            raise FieldError(
                f"Ensure this field has no more than {self.max_length} characters."
            )
        return value


@dataclass(frozen=True)
class Number(Field):
    low: float | None = None
    high: float | None = None
    integer: bool = False

    def clean(self, value):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise FieldError(self._kind_error())
        try:
            number = int(value) if self.integer else float(value)
        except (TypeError, ValueError, OverflowError):
            raise FieldError(self._kind_error())
        if isinstance(value, float) and self.integer and not value.is_integer():
            raise FieldError(self._kind_error())
        if not self.integer and not math.isfinite(number):
            raise FieldError(self._kind_error())
        if self.low is not None and number < self.low:
            raise FieldError(
                f"Ensure this value is greater than or equal to {self.low}."
            )
        if self.high is not None and number > self.high:
            raise FieldError(f"Ensure this value is less than or equal to {self.high}.")
        return number

    def _kind_error(self) -> str:
        return (
            "A valid integer is required."
            if self.integer
            else ("A valid number is required.")
        )


@dataclass(frozen=True)
class Choice(Field):
    choices: tuple = ()

    def clean(self, value):
        if not isinstance(value, str) or value not in self.choices:
            shown = value if isinstance(value, str) else type(value).__name__
            raise FieldError(f'"{shown}" is not a valid choice.')
        return value


@dataclass(frozen=True)
class When(Field):
    def clean(self, value):
        return datetime_parse(value)


@dataclass(frozen=True)
class JsonObject(Field):
    def clean(self, value):
        if not isinstance(value, dict):
            raise FieldError(
                f'Expected a dictionary of items but got type "{type(value).__name__}".'
            )
        problem = json_problem(value)
        if problem:
            raise FieldError(problem)
        return value


@dataclass(frozen=True)
class TextList(Field):
    max_items: int = 100
    max_length: int = MAX_ID

    def clean(self, value):
        if not isinstance(value, list):
            raise FieldError(
                f'Expected a list of items but got type "{type(value).__name__}".'
            )
        if len(value) > self.max_items:
            raise FieldError(
                f"Ensure this field has no more than {self.max_items} elements."
            )
        item = Text(self.name, max_length=self.max_length)
        return [item.clean(v) for v in value]


def fields_clean(fields: tuple[Field, ...], data: Any) -> tuple[dict, dict]:
    if not isinstance(data, dict):
        return {}, {"non_field_errors": ["Expected a JSON object."]}
    out: dict = {}
    errors: dict = {}
    for rule in fields:
        rule.take(data, out, errors)
    return out, errors


# --- steps ----------------------------------------------------------------------------

STEP_TYPE_ERROR = f"must be one of: {', '.join(StepType.values)}."
STEP_FIELDS = (
    Text("description", required=True, max_length=MAX_STEP_DESCRIPTION, trim=False),
    Text("tool", max_length=MAX_ID, null=True),
    Number("tokens", null=True, low=0, high=MAX_INT, integer=True),
    When("started_at", null=True),
    When("ended_at", null=True),
)
_STEP_TYPES = frozenset(StepType.values)


def step_clean(step: Any) -> tuple[dict, dict]:
    """One step: (clean values, errors)."""
    if not isinstance(step, dict):
        return {}, {"non_field_errors": ["Each step must be a JSON object."]}
    out, errors = fields_clean(STEP_FIELDS, step)
    kind = step.get("type")
    if kind is None:
        errors["type"] = [REQUIRED]
    elif not isinstance(kind, str) or kind not in _STEP_TYPES:
        shown = kind if isinstance(kind, str) else type(kind).__name__
        errors["type"] = [f'"{shown}" is not a valid step type; {STEP_TYPE_ERROR}']
    else:
        out["type"] = kind
    if out.get("tool") is None:
        out.pop("tool", None)
    if "result" in step:
        problem = json_problem(step["result"])
        if problem:
            errors["result"] = [problem]
        else:
            out["result"] = step["result"]
    return out, errors


def steps_clean(data: Any, *, allow_empty: bool = True) -> list[dict]:
    """A list of steps; PayloadInvalid keys errors by the step's index."""
    if not isinstance(data, list):
        raise PayloadInvalid(["Expected a list of steps."])
    if not data and not allow_empty:
        raise PayloadInvalid(["This list may not be empty."])
    if len(data) > MAX_STEPS_PER_RUN:
        raise PayloadInvalid([f"At most {MAX_STEPS_PER_RUN} steps per request."])
    steps, errors = [], {}
    for index, raw in enumerate(data):
        step, step_errors = step_clean(raw)
        if step_errors:
            errors[str(index)] = step_errors
        steps.append(step)
    if errors:
        raise PayloadInvalid(errors)
    return steps


# --- runs, outcomes, feedback ---------------------------------------------------------

OUTCOME_FIELDS = (
    Number("success_score", null=True, low=0.0, high=1.0),
    Text("error_message", max_length=MAX_ERROR_MESSAGE),
    Number("duration_ms", null=True, low=0, high=MAX_BIGINT, integer=True),
    Number("tokens_used", null=True, low=0, high=MAX_BIGINT, integer=True),
    Number("cost_usd", null=True, low=0.0),
    JsonObject("metrics"),
    TextList("playbook_versions", max_items=MAX_PLAYBOOK_VERSIONS, max_length=MAX_ID),
)
RUN_FIELDS = (
    Text("external_id", null=True, max_length=MAX_ID),
    Text("agent", max_length=MAX_AGENT),
    Text("user_id", max_length=MAX_ID),
    Text("session_id", max_length=MAX_ID),
    Text(
        "task_description", required=True, blank=False, max_length=MAX_TASK_DESCRIPTION
    ),
    Text("task_type", max_length=MAX_ID),
    Choice("status", choices=tuple(RunStatus.values)),
    When("started_at", null=True),
    When("completed_at", null=True),
    *OUTCOME_FIELDS,
)
COMPLETE_FIELDS = (
    Choice(
        "status",
        required=True,
        choices=(RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.PARTIAL),
    ),
    *OUTCOME_FIELDS,
)
FEEDBACK_FIELDS = (
    Choice("feedback_type", required=True, choices=tuple(FeedbackType.values)),
    Number("score", required=True, low=0.0, high=1.0),
    Text("source", max_length=MAX_ID),
    Text("message", max_length=MAX_FEEDBACK_MESSAGE),
    JsonObject("metrics"),
)


def _run_errors(data: Any) -> tuple[dict, dict]:
    run, errors = fields_clean(RUN_FIELDS, data)
    if errors.get("non_field_errors"):
        return run, errors
    if not run.get("external_id"):
        run["external_id"] = None
    if "steps" in data:
        try:
            run["steps"] = steps_clean(data["steps"])
        except PayloadInvalid as exc:
            errors["steps"] = exc.errors
    started, completed = run.get("started_at"), run.get("completed_at")
    if started and completed and completed < started:
        errors["completed_at"] = ["Must not be before started_at."]
    return run, errors


def run_clean(data: Any) -> dict:
    """One run payload, as `POST /api/v1/runs/` takes it."""
    run, errors = _run_errors(data)
    if errors:
        raise PayloadInvalid(errors)
    return run


def runs_clean(data: Any) -> list[dict]:
    """A batch's runs (the list under "runs"); errors keyed by the run's index."""
    if not isinstance(data, list):
        raise PayloadInvalid(
            {
                "runs": [
                    f'Expected a list of items but got type "{type(data).__name__}".'
                ]
            }
        )
    if not data:
        raise PayloadInvalid({"runs": ["This list may not be empty."]})
    if len(data) > MAX_RUNS_PER_BATCH:
        raise PayloadInvalid(
            {
                "runs": [
                    f"Ensure this field has no more than {MAX_RUNS_PER_BATCH} elements."
                ]
            }
        )
    runs, errors = [], {}
    for index, raw in enumerate(data):
        run, run_errors = _run_errors(raw)
        if run_errors:
            errors[str(index)] = run_errors
        runs.append(run)
    if errors:
        raise PayloadInvalid({"runs": errors})
    return runs


def outcome_clean(data: Any) -> dict:
    """What `POST /runs/{id}/complete/` takes: a final status and the outcome."""
    out, errors = fields_clean(COMPLETE_FIELDS, data)
    if errors:
        raise PayloadInvalid(errors)
    return out


def feedback_clean(data: Any) -> dict:
    out, errors = fields_clean(FEEDBACK_FIELDS, data)
    if errors:
        raise PayloadInvalid(errors)
    return out
