"""Input and output shapes of the runs API."""

import math
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from learning.models import (
    Feedback,
    FeedbackType,
    RunStatus,
    Step,
    StepType,
    Trajectory,
)

MAX_STEPS_PER_RUN = 5000
MAX_RUNS_PER_BATCH = 1000
# Column limits: a number the database cannot hold is a 400, never a 500.
MAX_BIGINT = 2**63 - 1
MAX_INT = 2**31 - 1
MAX_JSON_DEPTH = 64


class StrictCharField(serializers.CharField):
    """A string field that refuses numbers, booleans and objects instead of
    coercing them: a wrong type is the client's bug and should be named."""

    default_error_messages = {"invalid": "Not a valid string: got {type}."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid", type=type(data).__name__)
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    """A number field that refuses booleans and non-finite values."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            self.fail("invalid")
        return value


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data):
        if isinstance(data, bool) or (
            isinstance(data, float) and not data.is_integer()
        ):
            self.fail("invalid")
        return super().to_internal_value(data)


def _json_problem(value: Any, depth: int = 0) -> str | None:
    """Why PostgreSQL's jsonb would refuse this value (or None)."""
    if depth > MAX_JSON_DEPTH:
        return f"Nested deeper than {MAX_JSON_DEPTH} levels."
    if isinstance(value, str):
        return "Null characters are not allowed." if "\x00" in value else None
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN and infinite numbers are not allowed."
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in str(key):
                return "Null characters are not allowed."
            problem = _json_problem(item, depth + 1)
            if problem:
                return problem
    if isinstance(value, list):
        for item in value:
            problem = _json_problem(item, depth + 1)
            if problem:
                return problem
    return None


def validate_storable_json(value: Any) -> Any:
    problem = _json_problem(value)
    if problem:
        raise serializers.ValidationError(problem)
    return value


class StorableJSONField(serializers.JSONField):
    def __init__(self, **kwargs):
        kwargs.setdefault("validators", []).append(validate_storable_json)
        super().__init__(**kwargs)


class StorableDictField(serializers.DictField):
    def __init__(self, **kwargs):
        kwargs.setdefault("validators", []).append(validate_storable_json)
        super().__init__(**kwargs)


class StepInputSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=StepType.choices)
    # Blank is allowed (a tool that returned nothing); missing is not.
    description = StrictCharField(
        max_length=200_000, trim_whitespace=False, allow_blank=True
    )
    result = StorableJSONField(required=False, allow_null=True)
    tool = StrictCharField(max_length=200, required=False, allow_blank=True)
    tokens = StrictIntegerField(
        required=False, allow_null=True, min_value=0, max_value=MAX_INT
    )
    started_at = serializers.DateTimeField(required=False, allow_null=True)
    ended_at = serializers.DateTimeField(required=False, allow_null=True)


STEP_TYPES = frozenset(StepType.values)
STEP_TYPE_ERROR = f"must be one of: {', '.join(StepType.values)}."


def _datetime(value):
    try:
        parsed = parse_datetime(value) if isinstance(value, str) else None
    except ValueError as exc:  # well formed but impossible, e.g. month 13
        raise ValueError(f"must be an ISO 8601 date-time ({exc}).") from exc
    if parsed is None:
        raise ValueError("must be an ISO 8601 date-time.")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)


def _step_validate(step) -> tuple[dict, dict]:
    """One step, checked by hand with StepInputSerializer's rules and messages."""
    if not isinstance(step, dict):
        return {}, {"non_field_errors": ["Each step must be a JSON object."]}
    errors: dict[str, list[str]] = {}
    out: dict = {}
    kind = step.get("type")
    if kind is None:
        errors["type"] = ["This field is required."]
    elif not isinstance(kind, str) or kind not in STEP_TYPES:
        shown = kind if isinstance(kind, str) else type(kind).__name__
        errors["type"] = [f'"{shown}" is not a valid step type; {STEP_TYPE_ERROR}']
    else:
        out["type"] = kind
    text = step.get("description")
    if text is None:
        errors["description"] = ["This field is required."]
    elif not isinstance(text, str):
        errors["description"] = [f"Not a valid string: got {type(text).__name__}."]
    elif len(text) > 200_000:
        errors["description"] = [
            "Ensure this field has no more than 200000 characters."
        ]
    elif "\x00" in text:
        errors["description"] = ["Null characters are not allowed."]
    else:
        # Blank is allowed (a tool that returned nothing); missing is not.
        out["description"] = text
    if "result" in step:
        problem = _json_problem(step["result"])
        if problem:
            errors["result"] = [problem]
        else:
            out["result"] = step["result"]
    tool = step.get("tool")
    if tool is not None:
        if not isinstance(tool, str) or len(tool) > 200 or "\x00" in tool:
            errors["tool"] = ["Must be a string of at most 200 characters."]
        else:
            out["tool"] = tool
    tokens = step.get("tokens")
    if tokens is not None:
        if (
            isinstance(tokens, bool)
            or not isinstance(tokens, int)
            or not 0 <= tokens <= MAX_INT
        ):
            errors["tokens"] = [f"Must be an integer from 0 to {MAX_INT}."]
        else:
            out["tokens"] = tokens
    for key in ("started_at", "ended_at"):
        if step.get(key) is not None:
            try:
                out[key] = _datetime(step[key])
            except ValueError as exc:
                errors[key] = [str(exc)]
    return out, errors


@extend_schema_field(StepInputSerializer(many=True))
class StepListField(serializers.Field):
    """A list of steps, validated by hand: ingest's hot path, where nested serializers
    cost more than the database. Errors are keyed by the step's index."""

    def __init__(self, *, allow_empty: bool = True, **kwargs):
        self.allow_empty = allow_empty
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, list):
            raise serializers.ValidationError("Expected a list of steps.")
        if not data and not self.allow_empty:
            raise serializers.ValidationError("This list may not be empty.")
        if len(data) > MAX_STEPS_PER_RUN:
            raise serializers.ValidationError(
                f"At most {MAX_STEPS_PER_RUN} steps per request."
            )
        steps, errors = [], {}
        for index, raw in enumerate(data):
            step, step_errors = _step_validate(raw)
            if step_errors:
                errors[str(index)] = step_errors
            steps.append(step)
        if errors:
            raise serializers.ValidationError(errors)
        return steps

    def to_representation(self, value):
        return value


class StepsInputSerializer(serializers.Serializer):
    steps = StepListField(allow_empty=False)


class OutcomeFieldsMixin(serializers.Serializer):
    success_score = StrictFloatField(
        required=False, allow_null=True, min_value=0.0, max_value=1.0
    )
    error_message = StrictCharField(
        required=False, allow_blank=True, max_length=100_000
    )
    duration_ms = StrictIntegerField(
        required=False, allow_null=True, min_value=0, max_value=MAX_BIGINT
    )
    tokens_used = StrictIntegerField(
        required=False, allow_null=True, min_value=0, max_value=MAX_BIGINT
    )
    cost_usd = StrictFloatField(required=False, allow_null=True, min_value=0.0)
    metrics = StorableDictField(required=False)
    playbook_versions = serializers.ListField(
        child=StrictCharField(max_length=200), required=False, max_length=100
    )


class RunInputSerializer(OutcomeFieldsMixin):
    external_id = StrictCharField(
        max_length=200, required=False, allow_null=True, allow_blank=True
    )
    agent = StrictCharField(max_length=100, required=False, allow_blank=True)
    user_id = StrictCharField(max_length=200, required=False, allow_blank=True)
    session_id = StrictCharField(max_length=200, required=False, allow_blank=True)
    task_description = StrictCharField(max_length=100_000)
    task_type = StrictCharField(max_length=200, required=False, allow_blank=True)
    status = serializers.ChoiceField(choices=RunStatus.choices, required=False)
    started_at = serializers.DateTimeField(required=False, allow_null=True)
    completed_at = serializers.DateTimeField(required=False, allow_null=True)
    steps = StepListField(required=False)

    def validate_external_id(self, value):
        return value or None

    def validate(self, attrs):
        started, completed = attrs.get("started_at"), attrs.get("completed_at")
        if started and completed and completed < started:
            raise serializers.ValidationError(
                {"completed_at": ["Must not be before started_at."]}
            )
        return attrs


class RunBatchInputSerializer(serializers.Serializer):
    runs = RunInputSerializer(
        many=True, allow_empty=False, max_length=MAX_RUNS_PER_BATCH
    )


class RunCompleteInputSerializer(OutcomeFieldsMixin):
    status = serializers.ChoiceField(
        choices=[RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.PARTIAL]
    )


class FeedbackInputSerializer(serializers.Serializer):
    feedback_type = serializers.ChoiceField(choices=FeedbackType.choices)
    score = StrictFloatField(min_value=0.0, max_value=1.0)
    source = StrictCharField(max_length=200, required=False, allow_blank=True)
    message = StrictCharField(max_length=20_000, required=False, allow_blank=True)
    metrics = StorableDictField(required=False)


class StepOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Step
        fields = [
            "index",
            "type",
            "description",
            "result",
            "tool",
            "tokens",
            "started_at",
            "ended_at",
            "created_at",
        ]


class FeedbackOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Feedback
        fields = [
            "id",
            "feedback_type",
            "score",
            "source",
            "message",
            "metrics",
            "created_at",
        ]


class ReflectionStateSerializer(serializers.Serializer):
    status = serializers.CharField(source="reflection_status")
    reason = serializers.CharField(source="reflection_reason")
    error = serializers.CharField(source="reflection_error")
    attempts = serializers.IntegerField(source="reflection_attempts")
    reflected_at = serializers.DateTimeField(allow_null=True)


class RunOutputSerializer(serializers.ModelSerializer):
    namespace = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    reflection = ReflectionStateSerializer(source="*", read_only=True)
    step_count = serializers.SerializerMethodField()

    class Meta:
        model = Trajectory
        fields = [
            "id",
            "external_id",
            "namespace",
            "agent",
            "user_id",
            "session_id",
            "task_description",
            "task_type",
            "status",
            "success_score",
            "effective_score",
            "error_message",
            "duration_ms",
            "tokens_used",
            "cost_usd",
            "metrics",
            "playbook_versions",
            "needs_relearning",
            "relearning_priority",
            "redacted",
            "redaction_count",
            "reflection",
            "step_count",
            "started_at",
            "completed_at",
            "created_at",
            "updated_at",
        ]

    def get_step_count(self, run) -> int:
        count = getattr(run, "step_count", None)
        if count is None:
            count = run.steps.count()
        return count


class RunDetailOutputSerializer(RunOutputSerializer):
    steps = StepOutputSerializer(many=True, read_only=True)
    feedback = FeedbackOutputSerializer(many=True, read_only=True)

    class Meta(RunOutputSerializer.Meta):
        fields = RunOutputSerializer.Meta.fields + ["steps", "feedback"]


class FeedbackResultSerializer(serializers.Serializer):
    feedback = FeedbackOutputSerializer()
    effective_score = serializers.FloatField(allow_null=True)
    needs_relearning = serializers.BooleanField()
    relearning_priority = serializers.IntegerField()
    run = RunOutputSerializer()


class RunBatchItemSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    external_id = serializers.CharField(allow_null=True)
    created = serializers.BooleanField()


class RunBatchResultSerializer(serializers.Serializer):
    """The answer to a batch post: counts, then one item per posted run, in order."""

    created = serializers.IntegerField()
    existing = serializers.IntegerField()
    runs = RunBatchItemSerializer(many=True)
