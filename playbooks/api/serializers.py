"""Input and output shapes of the playbooks, skills, policy and recall API."""

from rest_framework import serializers

from learning import limits
from learning.api.serializers import (
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
)
from learning.models import Polarity
from playbooks.models import LearningMode, Scope, StrategyType
from playbooks.recall import DEFAULT_BUDGET, MAX_BUDGET
from playbooks.rollout import MAX_MIN_RUNS


class PlaybookInputSerializer(serializers.Serializer):
    slug = serializers.SlugField(max_length=100)
    name = StrictCharField(max_length=200, required=False, allow_blank=True, default="")
    scope = serializers.ChoiceField(choices=Scope.choices, default=Scope.TEAM)
    mode = serializers.ChoiceField(
        choices=LearningMode.choices, default=LearningMode.PROPOSE
    )
    task_types = serializers.ListField(
        child=StrictCharField(max_length=200),
        required=False,
        default=list,
        max_length=100,
    )


class PlaybookUpdateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=200, required=False)
    description = StrictCharField(required=False, allow_blank=True, max_length=5000)
    scope = serializers.ChoiceField(choices=Scope.choices, required=False)
    mode = serializers.ChoiceField(choices=LearningMode.choices, required=False)
    auto_apply_threshold = StrictFloatField(min_value=0, max_value=1, required=False)
    task_types = serializers.ListField(
        child=StrictCharField(max_length=200), required=False, max_length=100
    )
    agent_policy = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=100_000,
        help_text="The agent's own policy for this playbook (its system prompt or a "
        "policy document); candidates that contradict it get a block finding. Empty "
        "removes it.",
    )


class StrategyInputSerializer(serializers.Serializer):
    """Without `id`: add a strategy. With `id`: edit it, move it (`position`) or retire
    it (`"retire": true`)."""

    id = StrictIntegerField(required=False, min_value=1)
    type = serializers.ChoiceField(choices=StrategyType.choices, required=False)
    description = StrictCharField(
        required=False,
        max_length=limits.MAX_LESSON_TEXT,
        help_text="The lesson as text; its polarity and situation are then read from "
        "it (see `polarity`, `when`, `directive` to state them).",
    )
    polarity = serializers.ChoiceField(
        choices=Polarity.choices,
        required=False,
        help_text="`do` or `avoid`; with `directive`, the text is rendered from them.",
    )
    when = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=limits.MAX_LESSON_PART,
        help_text="The situation the lesson applies to (reads after 'When …').",
    )
    directive = StrictCharField(
        required=False,
        max_length=limits.MAX_LESSON_TEXT,
        help_text="What to do (or, with polarity `avoid`, what not to do), without a "
        "negation of its own.",
    )
    why = StrictCharField(
        required=False, allow_blank=True, max_length=limits.MAX_LESSON_PART
    )
    context = StrictCharField(required=False, allow_blank=True, max_length=4000)
    confidence = StrictFloatField(required=False, min_value=0, max_value=1)
    position = StrictIntegerField(required=False, min_value=0, max_value=100000)
    retire = serializers.BooleanField(required=False, default=False)
    note = StrictCharField(
        required=False, allow_blank=True, max_length=2000, default=""
    )
    save_anyway = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Save even though the audit has warn or block findings on the text "
        "(without it such an edit answers 409 with the findings); the findings are "
        "recorded in the version's audit event.",
    )

    def validate(self, attrs):
        if "id" not in attrs:
            missing = {
                f: ["This field is required to add a strategy."]
                for f in ("type",)
                if f not in attrs
            }
            if "description" not in attrs and "directive" not in attrs:
                missing["description"] = [
                    "Give the lesson as `description`, or as `polarity` and "
                    "`directive`."
                ]
            if missing:
                raise serializers.ValidationError(missing)
            if attrs.get("retire") or "position" in attrs:
                raise serializers.ValidationError(
                    {"id": ["Name the strategy to retire or move."]}
                )
        return attrs


class RollbackInputSerializer(serializers.Serializer):
    note = StrictCharField(
        required=False, allow_blank=True, max_length=2000, default=""
    )


class RecallQuerySerializer(serializers.Serializer):
    task = StrictCharField(max_length=10000, allow_blank=True, default="")
    task_type = StrictCharField(
        max_length=200, required=False, allow_blank=True, default=""
    )
    budget_tokens = serializers.IntegerField(
        min_value=1, max_value=MAX_BUDGET, default=DEFAULT_BUDGET
    )
    session_id = StrictCharField(
        max_length=200, required=False, allow_blank=True, default=""
    )
    run = StrictCharField(max_length=200, required=False, allow_blank=True, default="")
    user_id = StrictCharField(max_length=200, required=False, allow_blank=True)
    version = serializers.IntegerField(
        min_value=1,
        max_value=2**31 - 1,
        required=False,
        help_text='pin this version (for evaluation); the answer\'s cohort is "pinned"',
    )

    def validate(self, attrs):
        if not attrs["task"].strip() and not attrs["task_type"].strip():
            raise serializers.ValidationError(
                {"task": ["Describe the task (or give task_type)."]}
            )
        return attrs


class StrategyOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    key = serializers.UUIDField()
    type = serializers.CharField()
    description = serializers.CharField(
        help_text="The lesson as recall hands it out (rendered from its shape)."
    )
    polarity = serializers.CharField()
    when = serializers.CharField()
    directive = serializers.CharField()
    why = serializers.CharField()
    provenance = serializers.CharField()
    shape_classified = serializers.BooleanField(
        help_text="Polarity and situation were read from free text: check them."
    )
    context = serializers.CharField()
    evidence = serializers.ListField(child=serializers.CharField())
    confidence = serializers.FloatField()
    helpful_count = serializers.IntegerField()
    harmful_count = serializers.IntegerField()
    position = serializers.IntegerField()
    active = serializers.BooleanField()
    source_candidate = serializers.IntegerField(
        source="source_candidate_id", allow_null=True
    )
    last_recalled_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField()


class PlaybookOutputSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    scope = serializers.CharField()
    mode = serializers.CharField()
    auto_apply_threshold = serializers.FloatField()
    task_types = serializers.ListField(child=serializers.CharField())
    version = serializers.IntegerField(
        source="current_version",
        help_text="the version the strategies below are (the canary while a rollout "
        "runs)",
    )
    production_version = serializers.IntegerField(
        help_text="what recall serves by default"
    )
    canary_version = serializers.IntegerField(
        allow_null=True, help_text="the version on trial while a rollout runs"
    )
    strategy_count = serializers.IntegerField(default=None)
    flagged_versions = serializers.ListField(
        child=serializers.IntegerField(), default=list
    )
    updated_at = serializers.DateTimeField()


class PlaybookDetailOutputSerializer(PlaybookOutputSerializer):
    strategies = StrategyOutputSerializer(many=True)


class VersionOutputSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    change_kind = serializers.CharField()
    note = serializers.CharField()
    created_by = serializers.CharField()
    candidate = serializers.IntegerField(source="candidate_id", allow_null=True)
    rolled_back_to = serializers.IntegerField(allow_null=True)
    diff = serializers.JSONField()
    flagged = serializers.BooleanField()
    flag_reason = serializers.CharField()
    quality = serializers.JSONField()
    production_since = serializers.DateTimeField(
        allow_null=True, help_text="when it became production (null: never)"
    )
    production_until = serializers.DateTimeField(
        allow_null=True, help_text="when it stopped being production"
    )
    production_left = serializers.CharField(help_text="why it stopped")
    created_at = serializers.DateTimeField()


class VersionDetailOutputSerializer(VersionOutputSerializer):
    content = serializers.JSONField()


class RecallItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    key = serializers.CharField()
    type = serializers.CharField()
    polarity = serializers.CharField()
    when = serializers.CharField()
    directive = serializers.CharField()
    description = serializers.CharField()
    score = serializers.FloatField()


class RecallMemorySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    entity = serializers.CharField()
    content = serializers.CharField()


class RecallOutputSerializer(serializers.Serializer):
    playbook = serializers.CharField()
    version = serializers.IntegerField()
    cohort = serializers.ChoiceField(
        choices=["production", "canary", "pinned"],
        help_text="production, or canary while a rollout runs and this recall's "
        "session (else user, else run) falls in the canary's share; pinned with "
        "?version=n",
    )
    context = serializers.CharField()
    items = RecallItemSerializer(many=True)
    tokens = serializers.IntegerField()
    memories = RecallMemorySerializer(
        many=True, required=False, help_text="only when user_id was given"
    )


class SkillInputSerializer(serializers.Serializer):
    slug = serializers.SlugField(max_length=100)
    name = StrictCharField(max_length=200, required=False, allow_blank=True, default="")
    text = StrictCharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=200000,
        trim_whitespace=False,
    )


class AuditFindingsSerializer(serializers.Serializer):
    """409 for a hand edit the audit flags: nothing saved."""

    detail = serializers.CharField()
    code = serializers.CharField()
    audit = serializers.DictField(
        help_text='{"conflict": [...], "hygiene": [...], "duplicate": [...]}, '
        "findings as on a candidate"
    )


class SkillUpdateSerializer(serializers.Serializer):
    text = StrictCharField(allow_blank=True, max_length=200000, trim_whitespace=False)
    note = StrictCharField(
        required=False, allow_blank=True, max_length=2000, default=""
    )
    save_anyway = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Save even though the audit flags the new text (else 409 with the "
        "findings); they are recorded in the version's audit event.",
    )


class SkillOutputSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    text = serializers.CharField()
    hash = serializers.CharField()
    version = serializers.IntegerField(source="current_version")
    updated_at = serializers.DateTimeField()


class SkillVersionOutputSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    text = serializers.CharField()
    diff = serializers.CharField()
    change_kind = serializers.CharField()
    note = serializers.CharField()
    created_by = serializers.CharField()
    candidate = serializers.IntegerField(source="candidate_id", allow_null=True)
    created_at = serializers.DateTimeField()


class PolicySerializer(serializers.Serializer):
    allowed_tools = serializers.ListField(
        child=StrictCharField(max_length=200), required=False, max_length=1000
    )
    denied_tools = serializers.ListField(
        child=StrictCharField(max_length=200), required=False, max_length=1000
    )
    egress_allowlist = serializers.ListField(
        child=StrictCharField(max_length=300), required=False, max_length=1000
    )
    sensitive_paths = serializers.ListField(
        child=StrictCharField(max_length=500), required=False, max_length=1000
    )
    protected_branches = serializers.ListField(
        child=StrictCharField(max_length=200), required=False, max_length=1000
    )
    agent_policy = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=100_000,
        help_text="The agent's own policy for the namespace (its system prompt or a "
        "policy document); candidates that contradict it get a block finding only an "
        "admin can override. Empty removes it.",
    )


class MemoryOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    scope = serializers.CharField()
    user_id = serializers.CharField()
    entity = serializers.CharField()
    content = serializers.CharField()
    importance = serializers.FloatField()
    active = serializers.BooleanField()
    source_candidate = serializers.IntegerField(
        source="source_candidate_id", allow_null=True
    )
    consolidated_into = serializers.IntegerField(
        source="consolidated_into_id", allow_null=True
    )
    created_at = serializers.DateTimeField()


class RolloutPolicySerializer(serializers.Serializer):
    """A staged-rollout policy: each new version becomes the canary."""

    share = StrictFloatField(
        min_value=0,
        max_value=1,
        help_text="of sessions served the canary, 0 < share < 1",
    )
    min_runs_per_arm = StrictIntegerField(
        min_value=1,
        max_value=MAX_MIN_RUNS,
        help_text="finished runs each cohort needs before a verdict",
    )
    margin = StrictFloatField(
        min_value=0,
        max_value=0.5,
        help_text="a canary at most this much worse in success rate (0.05 = 5 "
        "points) is promoted",
    )


class RolloutNoteSerializer(serializers.Serializer):
    note = StrictCharField(
        required=False, allow_blank=True, max_length=2000, default=""
    )


class RolloutOutputSerializer(serializers.Serializer):
    playbook = serializers.CharField()
    production = serializers.IntegerField()
    canary = serializers.IntegerField(allow_null=True)
    share = serializers.FloatField(allow_null=True)
    state = serializers.ChoiceField(
        choices=["none", "running", "promoted", "rolled_back"],
        help_text="the latest rollout's state (none: never ran)",
    )
    policy = RolloutPolicySerializer(allow_null=True)
    rollout = serializers.JSONField(
        allow_null=True,
        help_text="the latest rollout: id, state, canary, production, parameters, "
        "started_at, ended_at, ended_by, reason",
    )
    arms = serializers.JSONField(
        allow_null=True,
        help_text='{"production": {"version", "runs", "successes", "success_rate", '
        '"success_ci", "scored", "mean_score"}, "canary": {...}}',
    )
    decision = serializers.JSONField(
        allow_null=True,
        help_text="outcome (waiting | continue | promote | roll_back), stage "
        "(waiting | horizon | sequential), estimate and interval of the success "
        "rate difference, the horizon and sequential analyses, the score "
        "difference, reason",
    )
    rule = serializers.CharField(allow_null=True, help_text="the decision rule")
