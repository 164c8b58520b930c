"""Playbooks and their versioned strategies, skills, memories, policy and recall log."""

import uuid

from django.db import models

from learning.models import LessonShapeFields


class Scope(models.TextChoices):
    AGENT = "agent"
    USER = "user"
    TEAM = "team"
    GLOBAL = "global"


class LearningMode(models.TextChoices):
    PROPOSE = "propose"
    BACKGROUND = "background"
    AGENTIC = "agentic"


class Playbook(models.Model):
    namespace = models.ForeignKey(
        "learning.Namespace", on_delete=models.CASCADE, related_name="playbooks"
    )
    slug = models.SlugField(max_length=100)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.TEAM)
    mode = models.CharField(
        max_length=16, choices=LearningMode.choices, default=LearningMode.PROPOSE
    )
    # Background mode applies clean candidates at or above this confidence.
    auto_apply_threshold = models.FloatField(default=0.8)
    # Runs of these task types feed this playbook (empty: the slug is the task type).
    task_types = models.JSONField(default=list, blank=True)
    # The version the live strategies equal (the newest edit; the canary while a
    # rollout runs) and the version recall serves by default. Without a running
    # rollout the two are the same (playbooks.quality: labels).
    current_version = models.PositiveIntegerField(default=1)
    production_version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.UniqueConstraint(
                fields=["namespace", "slug"], name="uniq_playbook_slug"
            )
        ]

    def __str__(self):
        return self.slug

    @property
    def canary_version(self) -> int | None:
        """The version on trial, while a rollout runs (it is the newest edit)."""
        if self.current_version != self.production_version:
            return self.current_version
        return None


class StrategyType(models.TextChoices):
    HELPFUL = "helpful"
    HARMFUL = "harmful"


class Strategy(LessonShapeFields):
    """The live state of one playbook entry; versions hold immutable snapshots."""

    playbook = models.ForeignKey(
        Playbook, on_delete=models.CASCADE, related_name="strategies"
    )
    key = models.UUIDField(
        default=uuid.uuid4, editable=False
    )  # identity across versions
    type = models.CharField(max_length=8, choices=StrategyType.choices)
    description = models.TextField()
    context = models.TextField(blank=True)
    evidence = models.JSONField(default=list, blank=True)  # run ids
    # The tasks of the runs it was learned from (a few, clipped, one per line): the
    # situations it is known to apply in, which recall matches a new task against.
    situations = models.TextField(blank=True)
    confidence = models.FloatField(default=0.5)
    helpful_count = models.PositiveIntegerField(default=0)
    harmful_count = models.PositiveIntegerField(default=0)
    position = models.PositiveIntegerField(default=0)
    active = models.BooleanField(default=True)
    source_candidate = models.ForeignKey(
        "learning.LearningCandidate",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    last_recalled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["playbook", "key"], name="uniq_strategy_key"
            )
        ]
        indexes = [
            models.Index(fields=["playbook", "active"], name="strategy_pb_active"),
            # recall's "best general strategies" fill, without sorting the playbook
            models.Index(
                fields=["playbook", "-confidence", "-helpful_count", "position"],
                condition=models.Q(active=True),
                name="strategy_fill",
            ),
        ]

    def __str__(self):
        return f"[{self.type}] {self.description[:60]}"


class ChangeKind(models.TextChoices):
    CREATE = "create"
    APPLY = "apply"
    EDIT = "edit"
    MERGE = "merge"
    ROLLBACK = "rollback"
    CURATION = "curation"


class PlaybookVersion(models.Model):
    """An immutable snapshot of a playbook's strategies, with the diff from the last."""

    playbook = models.ForeignKey(
        Playbook, on_delete=models.CASCADE, related_name="versions"
    )
    number = models.PositiveIntegerField()
    content = models.JSONField(default=list)  # [{key, type, description, context, ...}]
    diff = models.JSONField(
        default=dict
    )  # {"added": [...], "removed": [...], "changed": [...]}
    change_kind = models.CharField(max_length=16, choices=ChangeKind.choices)
    note = models.TextField(blank=True)
    created_by = models.CharField(max_length=150, blank=True)
    candidate = models.ForeignKey(
        "learning.LearningCandidate",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    rolled_back_to = models.PositiveIntegerField(null=True, blank=True)
    # A revert of an applied candidate records the version it undid.
    reverts = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    flagged = models.BooleanField(default=False)  # the quality gate says it does worse
    flag_reason = models.TextField(blank=True)
    # The quality gate's last figures for this version (as a canary, its cohort
    # against production's over the same period).
    quality = models.JSONField(default=dict, blank=True)
    # When this version served as production, and why it stopped.
    production_since = models.DateTimeField(null=True, blank=True)
    production_until = models.DateTimeField(null=True, blank=True)
    production_left = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["playbook", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["playbook", "number"], name="uniq_playbook_version"
            )
        ]

    def __str__(self):
        return f"{self.playbook_id}@{self.number}"


class Skill(models.Model):
    namespace = models.ForeignKey(
        "learning.Namespace", on_delete=models.CASCADE, related_name="skills"
    )
    slug = models.SlugField(max_length=100)
    name = models.CharField(max_length=200)
    text = models.TextField(blank=True)
    current_version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.UniqueConstraint(
                fields=["namespace", "slug"], name="uniq_skill_slug"
            )
        ]

    def __str__(self):
        return self.slug


class SkillVersion(models.Model):
    skill = models.ForeignKey(Skill, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    text = models.TextField(blank=True)
    diff = models.TextField(blank=True)  # unified diff from the previous version
    change_kind = models.CharField(max_length=16, choices=ChangeKind.choices)
    note = models.TextField(blank=True)
    created_by = models.CharField(max_length=150, blank=True)
    candidate = models.ForeignKey(
        "learning.LearningCandidate",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["skill", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["skill", "number"], name="uniq_skill_version"
            )
        ]


class MemoryKind(models.TextChoices):
    PREFERENCE = "preference"
    DURABLE_FACT = "durable_fact"
    SUMMARY = "summary"


class Memory(models.Model):
    namespace = models.ForeignKey(
        "learning.Namespace", on_delete=models.CASCADE, related_name="memories"
    )
    scope = models.CharField(max_length=16, default="namespace")  # "user" | "namespace"
    user_id = models.CharField(max_length=200, blank=True, db_index=True)
    entity = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=16, choices=MemoryKind.choices)
    content = models.TextField()
    importance = models.FloatField(default=0.5)
    active = models.BooleanField(default=True)
    source_candidate = models.ForeignKey(
        "learning.LearningCandidate",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    consolidated_into = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="sources"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-importance", "-created_at"]

    def __str__(self):
        return f"{self.kind}: {self.content[:60]}"


class HygienePolicy(models.Model):
    """What an agent may do in a namespace: tools, egress hosts, sensitive paths."""

    namespace = models.OneToOneField(
        "learning.Namespace", on_delete=models.CASCADE, related_name="policy"
    )
    allowed_tools = models.JSONField(default=list, blank=True)  # empty: any not denied
    denied_tools = models.JSONField(default=list, blank=True)
    egress_allowlist = models.JSONField(default=list, blank=True)  # hosts, *.suffix
    sensitive_paths = models.JSONField(default=list, blank=True)
    protected_branches = models.JSONField(default=list, blank=True)
    updated_by = models.CharField(max_length=150, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"policy for {self.namespace_id}"


class AgentPolicy(models.Model):
    """The agent's own policy — its system prompt or a policy document — for a
    namespace (no playbook) or one of its playbooks. Candidates are checked against
    its sentences like against curated strategies; contradicting it is a `block`
    finding only an admin can override."""

    namespace = models.ForeignKey(
        "learning.Namespace", on_delete=models.CASCADE, related_name="agent_policies"
    )
    playbook = models.ForeignKey(
        Playbook,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="agent_policies",
    )
    text = models.TextField()
    # Where the text came from: "hand", or "import:<file>" (the system message of
    # imported runs, when the importer was asked to take it).
    source = models.CharField(max_length=200, blank=True)
    updated_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["namespace"],
                condition=models.Q(playbook__isnull=True),
                name="agent_policy_one_per_namespace",
            ),
            models.UniqueConstraint(
                fields=["namespace", "playbook"],
                condition=models.Q(playbook__isnull=False),
                name="agent_policy_one_per_playbook",
            ),
        ]

    def __str__(self):
        where = f"playbook {self.playbook_id}" if self.playbook_id else "namespace"
        return f"agent policy for {where} {self.namespace_id}"


class RecallLog(models.Model):
    """Which version and strategies a recall handed out (for the quality gate)."""

    namespace = models.ForeignKey(
        "learning.Namespace", on_delete=models.CASCADE, related_name="+"
    )
    playbook = models.ForeignKey(
        Playbook, on_delete=models.CASCADE, related_name="recalls"
    )
    version = models.PositiveIntegerField()
    task = models.TextField(blank=True)
    task_type = models.CharField(max_length=200, blank=True)
    strategy_keys = models.JSONField(default=list)
    tokens = models.PositiveIntegerField(default=0)
    requested_by = models.CharField(max_length=150, blank=True)
    # production | canary (a rollout's cohort) | pinned (?version=n)
    cohort = models.CharField(max_length=16, blank=True, default="production")
    # Optional links to the run that received the context (per-strategy outcomes).
    session_id = models.CharField(max_length=200, blank=True)
    run_external_id = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["playbook", "-created_at"], name="recall_pb_created")
        ]


class RolloutPolicy(models.Model):
    """A playbook's staged-rollout policy: with one, a new version becomes the canary,
    served to `share` of the sessions, until the quality gate's verdict."""

    playbook = models.OneToOneField(
        Playbook, on_delete=models.CASCADE, related_name="rollout_policy"
    )
    share = models.FloatField()  # of sessions served the canary, 0 < share < 1
    min_runs_per_arm = models.PositiveIntegerField()
    margin = models.FloatField()  # success-rate loss still called "not worse"
    updated_by = models.CharField(max_length=150, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"rollout policy of {self.playbook_id}"


class RolloutState(models.TextChoices):
    RUNNING = "running"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    SUPERSEDED = "superseded"  # a newer version took its place as the canary


class Rollout(models.Model):
    """One experiment: `canary` against `production`, from `started_at`, with the
    policy's parameters as they were when it started."""

    playbook = models.ForeignKey(
        Playbook, on_delete=models.CASCADE, related_name="rollouts"
    )
    canary = models.PositiveIntegerField()
    production = models.PositiveIntegerField()
    share = models.FloatField()
    min_runs_per_arm = models.PositiveIntegerField()
    margin = models.FloatField()
    salt = models.CharField(max_length=64)  # cohort hashing; kept across fold-ins
    state = models.CharField(
        max_length=16, choices=RolloutState.choices, default=RolloutState.RUNNING
    )
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.CharField(max_length=150, blank=True)
    reason = models.TextField(blank=True)
    # The fixed-horizon analysis, stored once when both arms first reach the minimum.
    horizon = models.JSONField(default=dict, blank=True)
    # The last verdict's figures (final once the rollout ended).
    verdict = models.JSONField(default=dict, blank=True)
    # How production's content differs from the live strategies (= the canary's):
    # {"exclude": [keys of live rows production lacks or has otherwise],
    #  "items": [production's snapshot items for those keys]} (recall's overlay).
    overlay = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["playbook", "-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["playbook"],
                condition=models.Q(state="running"),
                name="one_running_rollout",
            )
        ]
        indexes = [
            models.Index(
                fields=["state"],
                condition=models.Q(state="running"),
                name="rollout_running",
            )
        ]

    def __str__(self):
        return (
            f"{self.playbook_id}: v{self.canary} vs v{self.production} ({self.state})"
        )
