"""Django admin: read-mostly views of playbooks and their history (edits go through the
/playbooks/ pages and the API so they are versioned and audited)."""
from django.contrib import admin

from playbooks.models import HygienePolicy, Memory, Playbook, PlaybookVersion, RecallLog, Skill


@admin.register(Playbook)
class PlaybookAdmin(admin.ModelAdmin):
    list_display = ("slug", "namespace", "scope", "mode", "current_version", "updated_at")
    list_filter = ("mode", "scope", "namespace")
    readonly_fields = ("current_version",)


@admin.register(PlaybookVersion)
class PlaybookVersionAdmin(admin.ModelAdmin):
    list_display = ("playbook", "number", "change_kind", "created_by", "flagged", "created_at")
    list_filter = ("change_kind", "flagged")
    readonly_fields = [f.name for f in PlaybookVersion._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(Skill)
class SkillAdmin(admin.ModelAdmin):
    list_display = ("slug", "namespace", "current_version", "updated_at")
    readonly_fields = ("text", "current_version")


@admin.register(Memory)
class MemoryAdmin(admin.ModelAdmin):
    list_display = ("kind", "namespace", "user_id", "entity", "importance", "active")
    list_filter = ("kind", "active", "namespace")
    search_fields = ("content", "user_id", "entity")


admin.site.register(HygienePolicy)
admin.site.register(RecallLog, list_display=("playbook", "version", "tokens", "created_at"))
