"""Input and output shapes of the runs API."""

import math
from typing import Any

from rest_framework import serializers

from learning import limits
from learning.models import (
    Feedback,
    FeedbackType,
    RunStatus,
    Step,
    StepType,
    Trajectory,
)
from learning.services import payloads


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


def validate_storable_json(value: Any) -> Any:
    problem = payloads.json_problem(value)
    if problem:
        raise serializers.ValidationError(problem)
    return value


class StorableDictField(serializers.DictField):
    def __init__(self, **kwargs):
        kwargs.setdefault("validators", []).append(validate_storable_json)
        super().__init__(**kwargs)


class ValidatedByService(serializers.Serializer):
    """An input serializer whose fields document the schema while the ingest service
    (`learning.services.payloads`) does the validation: one implementation for the
    API, the OTLP adapter, importers and MCP."""

    @staticmethod
    def clean(data):  # pragma: no cover - every subclass names its cleaner
        raise NotImplementedError

    def run_validation(self, data=serializers.empty):
        try:
            return self.clean(data)
        except payloads.PayloadInvalid as exc:
            raise serializers.ValidationError(exc.errors)


# The fields below are the OpenAPI schema; the rules are payloads' (same limits).


class StepInputSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=StepType.choices)
    # Blank is allowed (a tool that returned nothing); missing is not.
    description = StrictCharField(
        max_length=limits.MAX_STEP_DESCRIPTION, trim_whitespace=False, allow_blank=True
    )
    result = serializers.JSONField(required=False, allow_null=True)
    tool = StrictCharField(max_length=limits.MAX_ID, required=False, allow_blank=True)
    tokens = StrictIntegerField(
        required=False, allow_null=True, min_value=0, max_value=limits.MAX_INT
    )
    started_at = serializers.DateTimeField(required=False, allow_null=True)
    ended_at = serializers.DateTimeField(required=False, allow_null=True)
    step_id = StrictCharField(
        max_length=limits.MAX_ID,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="Your id for the step, unique in the run: appending it again "
        "stores nothing twice and answers the stored step.",
    )


class StepsInputSerializer(ValidatedByService):
    steps = StepInputSerializer(many=True, max_length=limits.MAX_STEPS_PER_RUN)

    @staticmethod
    def clean(data):
        if not isinstance(data, dict):
            raise payloads.PayloadInvalid(
                {"non_field_errors": ["Expected a JSON object."]}
            )
        if "steps" not in data:
            raise payloads.PayloadInvalid({"steps": [payloads.REQUIRED]})
        try:
            return {"steps": payloads.steps_clean(data["steps"], allow_empty=False)}
        except payloads.PayloadInvalid as exc:
            raise payloads.PayloadInvalid({"steps": exc.errors})


class OutcomeFieldsMixin(serializers.Serializer):
    success_score = StrictFloatField(
        required=False, allow_null=True, min_value=0.0, max_value=1.0
    )
    error_message = StrictCharField(
        required=False, allow_blank=True, max_length=limits.MAX_ERROR_MESSAGE
    )
    duration_ms = StrictIntegerField(
        required=False, allow_null=True, min_value=0, max_value=limits.MAX_BIGINT
    )
    tokens_used = StrictIntegerField(
        required=False, allow_null=True, min_value=0, max_value=limits.MAX_BIGINT
    )
    cost_usd = StrictFloatField(required=False, allow_null=True, min_value=0.0)
    metrics = StorableDictField(required=False)
    playbook_versions = serializers.ListField(
        child=StrictCharField(max_length=limits.MAX_ID),
        required=False,
        max_length=limits.MAX_PLAYBOOK_VERSIONS,
    )


class RunInputSerializer(OutcomeFieldsMixin, ValidatedByService):
    external_id = StrictCharField(
        max_length=limits.MAX_ID, required=False, allow_null=True, allow_blank=True
    )
    agent = StrictCharField(
        max_length=limits.MAX_AGENT, required=False, allow_blank=True
    )
    user_id = StrictCharField(
        max_length=limits.MAX_ID, required=False, allow_blank=True
    )
    session_id = StrictCharField(
        max_length=limits.MAX_ID, required=False, allow_blank=True
    )
    task_description = StrictCharField(max_length=limits.MAX_TASK_DESCRIPTION)
    task_type = StrictCharField(
        max_length=limits.MAX_ID, required=False, allow_blank=True
    )
    status = serializers.ChoiceField(choices=RunStatus.choices, required=False)
    started_at = serializers.DateTimeField(required=False, allow_null=True)
    completed_at = serializers.DateTimeField(required=False, allow_null=True)
    steps = StepInputSerializer(
        many=True, required=False, max_length=limits.MAX_STEPS_PER_RUN
    )

    clean = staticmethod(payloads.run_clean)


class RunBatchInputSerializer(ValidatedByService):
    runs = RunInputSerializer(
        many=True, allow_empty=False, max_length=limits.MAX_RUNS_PER_BATCH
    )

    @staticmethod
    def clean(data):
        if not isinstance(data, dict):
            raise payloads.PayloadInvalid(
                {"non_field_errors": ["Expected a JSON object."]}
            )
        if "runs" not in data:
            raise payloads.PayloadInvalid({"runs": [payloads.REQUIRED]})
        return {"runs": payloads.runs_clean(data["runs"])}


class RunCompleteInputSerializer(OutcomeFieldsMixin, ValidatedByService):
    status = serializers.ChoiceField(
        choices=[RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.PARTIAL]
    )

    clean = staticmethod(payloads.outcome_clean)


class FeedbackInputSerializer(ValidatedByService):
    feedback_type = serializers.ChoiceField(choices=FeedbackType.choices)
    score = StrictFloatField(min_value=0.0, max_value=1.0)
    source = StrictCharField(max_length=limits.MAX_ID, required=False, allow_blank=True)
    message = StrictCharField(
        max_length=limits.MAX_FEEDBACK_MESSAGE, required=False, allow_blank=True
    )
    metrics = StorableDictField(required=False)

    clean = staticmethod(payloads.feedback_clean)


class StepOutputSerializer(serializers.ModelSerializer):
    step_id = serializers.CharField(source="client_id", read_only=True)

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
            "step_id",
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
