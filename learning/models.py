"""Runs (trajectories), their steps and feedback; reflections and learning candidates."""

import hashlib
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Namespace(models.Model):
    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200, blank=True)
    # Domain knowledge for the offline reflector, as data the namespace owns (which
    # tools change state, advice for known errors, required steps): the format is
    # in learning/reflectors/offline/rules.py. {} = none: the engine knows no domain.
    reflection_rules = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self):
        return self.slug


class Role(models.TextChoices):
    AGENT = "agent", "Agent"
    REVIEWER = "reviewer", "Reviewer"
    ADMIN = "admin", "Admin"


ROLE_RANK = {Role.AGENT: 0, Role.REVIEWER: 1, Role.ADMIN: 2}


class ApiToken(models.Model):
    """A bearer token: one namespace, one role. Only the SHA-256 of the key is stored."""

    PREFIX = "fw_"

    namespace = models.ForeignKey(
        Namespace, on_delete=models.CASCADE, related_name="tokens"
    )
    name = models.CharField(max_length=100)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.AGENT)
    key_prefix = models.CharField(max_length=12, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.name} ({self.role}@{self.namespace_id})"

    @staticmethod
    def hash_key(raw: str) -> str:
        return hashlib.sha256(raw.encode()).hexdigest()

    @classmethod
    def generate_key(cls) -> str:
        return cls.PREFIX + secrets.token_urlsafe(32)


class Membership(models.Model):
    """A console user's role in one namespace (reviewers and admins)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    namespace = models.ForeignKey(
        Namespace, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.REVIEWER)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "namespace"], name="uniq_membership"
            )
        ]

    def __str__(self):
        return f"{self.user} {self.role}@{self.namespace}"


class RunStatus(models.TextChoices):
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    PARTIAL = "partial"


class ReflectionStatus(models.TextChoices):
    UNDECIDED = "undecided"  # still running: nothing to decide yet
    PENDING = "pending"
    REFLECTED = "reflected"
    SKIPPED = "skipped"
    FAILED = "failed"


class Trajectory(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    namespace = models.ForeignKey(
        Namespace, on_delete=models.CASCADE, related_name="runs"
    )
    external_id = models.CharField(max_length=200, null=True, blank=True)
    agent = models.CharField(max_length=100, blank=True, db_index=True)
    user_id = models.CharField(max_length=200, blank=True, db_index=True)
    session_id = models.CharField(max_length=200, blank=True)
    task_description = models.TextField()
    task_type = models.CharField(max_length=200, blank=True, db_index=True)
    status = models.CharField(
        max_length=16,
        choices=RunStatus.choices,
        default=RunStatus.RUNNING,
        db_index=True,
    )
    success_score = models.FloatField(null=True, blank=True)
    effective_score = models.FloatField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    duration_ms = models.BigIntegerField(null=True, blank=True)
    tokens_used = models.BigIntegerField(null=True, blank=True)
    cost_usd = models.FloatField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    playbook_versions = models.JSONField(default=list, blank=True)
    needs_relearning = models.BooleanField(default=False)
    relearning_priority = models.PositiveSmallIntegerField(default=0)
    redacted = models.BooleanField(default=False)
    redaction_count = models.PositiveIntegerField(default=0)
    # The reflection decision and its outcome.
    reflection_status = models.CharField(
        max_length=16,
        choices=ReflectionStatus.choices,
        default=ReflectionStatus.UNDECIDED,
    )
    reflection_reason = models.CharField(max_length=200, blank=True)
    reflection_error = models.TextField(blank=True)
    reflection_attempts = models.PositiveSmallIntegerField(default=0)
    reflected_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["namespace", "external_id"],
                condition=Q(external_id__isnull=False),
                name="uniq_run_external_id_per_namespace",
            ),
            models.CheckConstraint(
                condition=Q(success_score__isnull=True)
                | Q(success_score__gte=0, success_score__lte=1),
                name="run_success_score_0_1",
            ),
        ]
        indexes = [
            models.Index(fields=["namespace", "-created_at"], name="run_ns_created"),
            models.Index(
                fields=["namespace", "task_type", "status"], name="run_ns_type_status"
            ),
            models.Index(
                fields=["namespace", "-relearning_priority"],
                condition=Q(needs_relearning=True),
                name="run_relearn_queue",
            ),
        ]

    def __str__(self):
        return self.external_id or str(self.id)


class StepType(models.TextChoices):
    ACTION = "action"
    DECISION = "decision"
    OBSERVATION = "observation"
    TOOL_CALL = "tool_call"
    MESSAGE = "message"


class Step(models.Model):
    trajectory = models.ForeignKey(
        Trajectory, on_delete=models.CASCADE, related_name="steps"
    )
    index = models.PositiveIntegerField()
    type = models.CharField(max_length=16, choices=StepType.choices)
    description = models.TextField()
    result = models.JSONField(null=True, blank=True)
    tool = models.CharField(max_length=200, blank=True)
    tokens = models.IntegerField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # Set by the writer (one timestamp for a run's steps), so the answer to a post
    # can say what was stored without reading it back.
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["trajectory", "index"]
        constraints = [
            models.UniqueConstraint(
                fields=["trajectory", "index"], name="uniq_step_index"
            )
        ]

    def __str__(self):
        return f"{self.index}:{self.type}"


class FeedbackType(models.TextChoices):
    HUMAN = "human"
    MONITORING = "monitoring"
    AB_TEST = "ab_test"
    PRODUCTION = "production"
    TEST = "test"
    LLM_JUDGE = "llm_judge"


class Feedback(models.Model):
    trajectory = models.ForeignKey(
        Trajectory, on_delete=models.CASCADE, related_name="feedback"
    )
    feedback_type = models.CharField(max_length=16, choices=FeedbackType.choices)
    score = models.FloatField()
    source = models.CharField(max_length=200, blank=True)
    message = models.TextField(blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{self.feedback_type}={self.score}"


class Reflection(models.Model):
    """The analysis of one run (or of a batch of runs of one task type)."""

    namespace = models.ForeignKey(
        Namespace, on_delete=models.CASCADE, related_name="reflections"
    )
    trajectory = models.ForeignKey(
        Trajectory,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="reflections",
    )
    batch_runs = models.ManyToManyField(
        Trajectory, blank=True, related_name="batch_reflections"
    )
    task_type = models.CharField(max_length=200, blank=True)
    is_batch = models.BooleanField(default=False)
    helpful_strategies = models.JSONField(default=list, blank=True)
    harmful_patterns = models.JSONField(default=list, blank=True)
    observations = models.JSONField(default=list, blank=True)
    reflector = models.CharField(max_length=100)  # model name or "offline"
    fallback = models.BooleanField(default=False)
    fallback_reason = models.TextField(blank=True)
    prompt_version = models.CharField(max_length=40, blank=True)
    input_tokens = models.IntegerField(default=0)
    output_tokens = models.IntegerField(default=0)
    cost_usd = models.FloatField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"reflection {self.pk} by {self.reflector}"


class CandidateKind(models.TextChoices):
    STRATEGY_HELPFUL = "strategy_helpful"
    STRATEGY_HARMFUL = "strategy_harmful"
    PREFERENCE = "preference"
    DURABLE_FACT = "durable_fact"
    PROCEDURE = "procedure"
    PATCH_SKILL = "patch_skill"


# The kinds that become memories (per user or namespace) rather than playbook entries.
MEMORY_KINDS = frozenset({CandidateKind.PREFERENCE, CandidateKind.DURABLE_FACT})


class Polarity(models.TextChoices):
    """Whether a lesson says to do something or to avoid it (learning.lessons)."""

    DO = "do"
    AVOID = "avoid"


class Provenance(models.TextChoices):
    """Where a lesson came from; never its polarity."""

    SUCCESS = "success"
    FAILURE = "failure"
    CONTRAST = "contrast"
    FEEDBACK = "feedback"
    BATCH = "batch"
    REVIEWER = "reviewer"
    AGENT = "agent"


# The kinds that are directives in the lesson shape (polarity, when, directive, why).
SHAPED_KINDS = frozenset(
    {
        CandidateKind.STRATEGY_HELPFUL,
        CandidateKind.STRATEGY_HARMFUL,
        CandidateKind.PROCEDURE,
    }
)


class LessonShapeFields(models.Model):
    """The lesson shape, stored structured (learning.lessons): `content`/`description`
    is rendered from it. `shape_classified` says the polarity and situation were read
    from free text (a proposal, a hand edit, a migrated row) rather than stated, so the
    console shows them for a reviewer to correct."""

    polarity = models.CharField(max_length=8, choices=Polarity.choices, blank=True)
    when = models.TextField(blank=True, db_column="lesson_when")
    directive = models.TextField(blank=True)
    why = models.TextField(blank=True)
    provenance = models.CharField(max_length=16, choices=Provenance.choices, blank=True)
    shape_classified = models.BooleanField(default=False)

    class Meta:
        abstract = True


class CandidateStatus(models.TextChoices):
    PENDING = "pending"
    APPROVED = "approved"
    APPLIED = "applied"
    APPLY_FAILED = "apply_failed"
    DENIED = "denied"
    CONFLICTED = "conflicted"
    SUPERSEDED = "superseded"


TERMINAL_STATUSES = frozenset(
    {
        CandidateStatus.APPLIED,
        CandidateStatus.DENIED,
        CandidateStatus.CONFLICTED,
        CandidateStatus.SUPERSEDED,
    }
)


class Severity(models.TextChoices):
    NONE = ""
    INFO = "info"
    WARN = "warn"
    BLOCK = "block"


class LearningCandidate(LessonShapeFields):
    namespace = models.ForeignKey(
        Namespace, on_delete=models.CASCADE, related_name="candidates"
    )
    kind = models.CharField(max_length=24, choices=CandidateKind.choices)
    status = models.CharField(
        max_length=16,
        choices=CandidateStatus.choices,
        default=CandidateStatus.PENDING,
        db_index=True,
    )
    content = models.TextField()
    rationale = models.TextField(blank=True)
    confidence = models.FloatField(default=0.5)
    # Target: a playbook (strategies, procedures), a skill (patch_skill) or memory.
    playbook = models.ForeignKey(
        "playbooks.Playbook",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="candidates",
    )
    skill = models.ForeignKey(
        "playbooks.Skill",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="candidates",
    )
    memory_scope = models.CharField(max_length=16, blank=True)  # "user" | "namespace"
    user_id = models.CharField(max_length=200, blank=True)
    entity = models.CharField(max_length=200, blank=True)
    task_type = models.CharField(max_length=200, blank=True)
    agent = models.CharField(max_length=100, blank=True)
    # patch_skill: a unified diff against the skill text whose SHA-256 is base_hash.
    patch = models.TextField(blank=True)
    base_hash = models.CharField(max_length=64, blank=True)
    # Provenance.
    source = models.CharField(
        max_length=16, default="reflection"
    )  # reflection|agent|batch
    proposed_by = models.CharField(max_length=100, blank=True)
    reflection = models.ForeignKey(
        Reflection,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="candidates",
    )
    evidence_runs = models.ManyToManyField(
        Trajectory, through="CandidateEvidence", related_name="candidates", blank=True
    )
    evidence_count = models.PositiveIntegerField(default=1)
    fingerprint = models.CharField(max_length=64, db_index=True, blank=True)
    below_floor = models.BooleanField(default=False)
    # Audits.
    audit = models.JSONField(null=True, blank=True)
    audited_at = models.DateTimeField(null=True, blank=True)
    max_severity = models.CharField(
        max_length=8, choices=Severity.choices, default=Severity.NONE, blank=True
    )
    override_by = models.CharField(max_length=150, blank=True)
    # Review.
    decided_by = models.CharField(max_length=150, blank=True)
    decision_note = models.TextField(blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    superseded_by = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="merged"
    )
    replaces_strategy = models.ForeignKey(
        "playbooks.Strategy",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="replaced_by_candidates",
    )
    apply_error = models.TextField(blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    applied_version = models.PositiveIntegerField(null=True, blank=True)
    auto_applied = models.BooleanField(default=False)
    # Soft lock: the reviewer who opened it holds it until lease_until.
    leased_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["namespace", "status", "-created_at"], name="cand_ns_status"
            ),
            models.Index(fields=["namespace", "fingerprint"], name="cand_ns_fp"),
        ]

    def __str__(self):
        return f"{self.kind}: {self.content[:60]}"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class CandidateEvidence(models.Model):
    """One run behind a candidate, with the exact steps that show the lesson."""

    candidate = models.ForeignKey(
        LearningCandidate, on_delete=models.CASCADE, related_name="evidence"
    )
    trajectory = models.ForeignKey(
        Trajectory, on_delete=models.CASCADE, related_name="candidate_evidence"
    )
    step_indexes = models.JSONField(default=list, blank=True)
    reflection = models.ForeignKey(
        Reflection, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["candidate", "trajectory"], name="uniq_candidate_evidence"
            )
        ]


class Webhook(models.Model):
    """A URL that receives signed events of one namespace (learning.webhooks)."""

    namespace = models.ForeignKey(
        Namespace, on_delete=models.CASCADE, related_name="webhooks"
    )
    url = models.URLField(max_length=500)
    # Signs each body: X-Flywheel-Signature: sha256=HMAC-SHA256(secret, body).
    secret = models.CharField(max_length=100)
    events = models.JSONField(default=list, blank=True)  # empty: every event
    active = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["namespace", "id"]

    def __str__(self):
        return f"{self.url} ({self.namespace_id})"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookDelivery(models.Model):
    """One event for one webhook, and how its delivery went (the delivery log)."""

    webhook = models.ForeignKey(
        Webhook, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_id = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)
    event = models.CharField(max_length=50)
    payload = models.JSONField(default=dict)
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["webhook", "-created_at"], name="delivery_hook_created"
            )
        ]

    def __str__(self):
        return f"{self.event} → {self.webhook_id} ({self.status})"
