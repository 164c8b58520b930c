"""Django admin for playbooks, skills and memories: read-mostly.

Playbook and skill content changes only through playbooks/services.py (each change a
new audited version); the admin shows versions and diffs, and edits only the hygiene
policy and memory flags.
"""

from django.contrib import admin

from learning.admin import ReadOnlyAdmin, ReadOnlyInline
from playbooks.models import (
    HygienePolicy,
    Memory,
    Playbook,
    PlaybookVersion,
    RecallLog,
    Rollout,
    RolloutPolicy,
    Skill,
    SkillVersion,
    Strategy,
)


class StrategyInline(ReadOnlyInline):
    model = Strategy
    fields = [
        "type",
        "description",
        "context",
        "confidence",
        "helpful_count",
        "harmful_count",
        "active",
    ]
    ordering = ["position"]


class PlaybookVersionInline(ReadOnlyInline):
    model = PlaybookVersion
    fields = ["number", "change_kind", "created_by", "note", "flagged", "created_at"]
    ordering = ["-number"]
    show_change_link = True


@admin.register(Playbook)
class PlaybookAdmin(ReadOnlyAdmin):
    list_display = [
        "slug",
        "name",
        "namespace",
        "scope",
        "mode",
        "production_version",
        "current_version",
        "updated_at",
    ]
    list_filter = ["scope", "mode", "namespace"]
    list_select_related = ["namespace"]
    search_fields = ["slug", "name", "description"]
    inlines = [StrategyInline, PlaybookVersionInline]


@admin.register(Rollout)
class RolloutAdmin(ReadOnlyAdmin):
    """Rollouts change only through playbooks.rollout (audited, with webhooks)."""

    list_display = [
        "playbook",
        "canary",
        "production",
        "state",
        "share",
        "started_at",
        "ended_at",
        "ended_by",
    ]
    list_filter = ["state"]
    list_select_related = ["playbook"]
    search_fields = ["playbook__slug", "reason"]


@admin.register(RolloutPolicy)
class RolloutPolicyAdmin(ReadOnlyAdmin):
    list_display = ["playbook", "share", "min_runs_per_arm", "margin", "updated_by"]
    list_select_related = ["playbook"]


@admin.register(PlaybookVersion)
class PlaybookVersionAdmin(ReadOnlyAdmin):
    list_display = [
        "playbook",
        "number",
        "change_kind",
        "created_by",
        "flagged",
        "created_at",
    ]
    list_filter = ["change_kind", "flagged"]
    list_select_related = ["playbook"]
    search_fields = ["playbook__slug", "note"]


@admin.register(Strategy)
class StrategyAdmin(ReadOnlyAdmin):
    list_display = [
        "playbook",
        "type",
        "description",
        "confidence",
        "helpful_count",
        "harmful_count",
        "active",
    ]
    list_filter = ["type", "active"]
    list_select_related = ["playbook"]
    search_fields = ["description", "context"]


class SkillVersionInline(ReadOnlyInline):
    model = SkillVersion
    fields = ["number", "change_kind", "created_by", "note", "created_at"]
    ordering = ["-number"]
    show_change_link = True


@admin.register(Skill)
class SkillAdmin(ReadOnlyAdmin):
    list_display = ["slug", "name", "namespace", "current_version", "updated_at"]
    list_filter = ["namespace"]
    search_fields = ["slug", "name", "text"]
    inlines = [SkillVersionInline]


@admin.register(SkillVersion)
class SkillVersionAdmin(ReadOnlyAdmin):
    list_display = ["skill", "number", "change_kind", "created_by", "created_at"]
    list_select_related = ["skill"]


@admin.register(Memory)
class MemoryAdmin(admin.ModelAdmin):
    list_display = [
        "kind",
        "content",
        "scope",
        "user_id",
        "entity",
        "importance",
        "active",
        "namespace",
        "created_at",
    ]
    list_filter = ["kind", "scope", "active", "namespace"]
    list_select_related = ["namespace"]
    search_fields = ["content", "user_id", "entity"]
    fields = [
        "namespace",
        "kind",
        "scope",
        "user_id",
        "entity",
        "content",
        "importance",
        "active",
        "source_candidate",
        "consolidated_into",
        "created_at",
    ]
    readonly_fields = [
        "namespace",
        "kind",
        "scope",
        "user_id",
        "entity",
        "content",
        "source_candidate",
        "consolidated_into",
        "created_at",
    ]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(HygienePolicy)
class HygienePolicyAdmin(admin.ModelAdmin):
    """What agents may do in a namespace: the hygiene audit reads it."""

    list_display = ["namespace", "updated_by", "updated_at"]
    readonly_fields = ["updated_by", "updated_at"]

    def save_model(self, request, obj, form, change):
        obj.updated_by = request.user.get_username()
        super().save_model(request, obj, form, change)


@admin.register(RecallLog)
class RecallLogAdmin(ReadOnlyAdmin):
    list_display = [
        "playbook",
        "version",
        "task_type",
        "tokens",
        "requested_by",
        "created_at",
    ]
    list_filter = ["playbook"]
    list_select_related = ["playbook"]
    search_fields = ["task", "run_external_id", "session_id"]
