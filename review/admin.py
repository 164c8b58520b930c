"""Django admin for the audit trail: read-only (it is the record of what happened)."""

from django.contrib import admin

from learning.admin import ReadOnlyAdmin
from review.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "actor",
        "action",
        "target_type",
        "target_id",
        "from_status",
        "to_status",
        "namespace",
    ]
    list_filter = ["action", "target_type", "namespace"]
    list_select_related = ["namespace"]
    search_fields = ["actor", "target_id", "note"]
    date_hierarchy = "created_at"
