"""Input and output shapes of the runs API."""
from rest_framework import serializers

from learning.models import Feedback, FeedbackType, RunStatus, Step, StepType, Trajectory

MAX_STEPS_PER_RUN = 5000
MAX_RUNS_PER_BATCH = 1000


class StepInputSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=StepType.choices)
    description = serializers.CharField(max_length=200_000, trim_whitespace=False)
    result = serializers.JSONField(required=False, allow_null=True)
    tool = serializers.CharField(max_length=200, required=False, allow_blank=True)
    tokens = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    started_at = serializers.DateTimeField(required=False, allow_null=True)
    ended_at = serializers.DateTimeField(required=False, allow_null=True)


class StepsInputSerializer(serializers.Serializer):
    steps = StepInputSerializer(many=True, allow_empty=False, max_length=MAX_STEPS_PER_RUN)


class OutcomeFieldsMixin(serializers.Serializer):
    success_score = serializers.FloatField(
        required=False, allow_null=True, min_value=0.0, max_value=1.0
    )
    error_message = serializers.CharField(required=False, allow_blank=True, max_length=100_000)
    duration_ms = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    tokens_used = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    cost_usd = serializers.FloatField(required=False, allow_null=True, min_value=0.0)
    metrics = serializers.DictField(required=False)
    playbook_versions = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, max_length=100
    )


class RunInputSerializer(OutcomeFieldsMixin):
    external_id = serializers.CharField(max_length=200, required=False, allow_null=True)
    agent = serializers.CharField(max_length=100, required=False, allow_blank=True)
    user_id = serializers.CharField(max_length=200, required=False, allow_blank=True)
    session_id = serializers.CharField(max_length=200, required=False, allow_blank=True)
    task_description = serializers.CharField(max_length=100_000)
    task_type = serializers.CharField(max_length=200, required=False, allow_blank=True)
    status = serializers.ChoiceField(choices=RunStatus.choices, required=False)
    started_at = serializers.DateTimeField(required=False, allow_null=True)
    completed_at = serializers.DateTimeField(required=False, allow_null=True)
    steps = StepInputSerializer(many=True, required=False, max_length=MAX_STEPS_PER_RUN)

    def validate_external_id(self, value):
        return value or None


class RunBatchInputSerializer(serializers.Serializer):
    runs = RunInputSerializer(many=True, allow_empty=False, max_length=MAX_RUNS_PER_BATCH)


class RunCompleteInputSerializer(OutcomeFieldsMixin):
    status = serializers.ChoiceField(
        choices=[RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.PARTIAL]
    )


class FeedbackInputSerializer(serializers.Serializer):
    feedback_type = serializers.ChoiceField(choices=FeedbackType.choices)
    score = serializers.FloatField(min_value=0.0, max_value=1.0)
    source = serializers.CharField(max_length=200, required=False, allow_blank=True)
    message = serializers.CharField(max_length=20_000, required=False, allow_blank=True)
    metrics = serializers.DictField(required=False)


class StepOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Step
        fields = ["index", "type", "description", "result", "tool", "tokens", "started_at",
                  "ended_at", "created_at"]


class FeedbackOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Feedback
        fields = ["id", "feedback_type", "score", "source", "message", "metrics", "created_at"]


class ReflectionStateSerializer(serializers.Serializer):
    status = serializers.CharField(source="reflection_status")
    reason = serializers.CharField(source="reflection_reason")
    error = serializers.CharField(source="reflection_error")
    attempts = serializers.IntegerField(source="reflection_attempts")
    reflected_at = serializers.DateTimeField()


class RunOutputSerializer(serializers.ModelSerializer):
    namespace = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    reflection = ReflectionStateSerializer(source="*", read_only=True)
    step_count = serializers.SerializerMethodField()

    class Meta:
        model = Trajectory
        fields = [
            "id", "external_id", "namespace", "agent", "user_id", "session_id",
            "task_description", "task_type", "status", "success_score", "effective_score",
            "error_message", "duration_ms", "tokens_used", "cost_usd", "metrics",
            "playbook_versions", "needs_relearning", "relearning_priority", "redacted",
            "redaction_count", "reflection", "step_count", "started_at", "completed_at",
            "created_at", "updated_at",
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
