"""The audit trail: every review action and every change to curated knowledge."""

from django.db import models


class AuditEvent(models.Model):
    namespace = models.ForeignKey(
        "learning.Namespace", on_delete=models.CASCADE, related_name="audit_events"
    )
    actor = models.CharField(max_length=150)  # username, "token:<name>" or "system"
    action = models.CharField(max_length=40, db_index=True)  # approve, deny, apply, ...
    target_type = models.CharField(max_length=40)  # candidate, playbook, skill, ...
    target_id = models.CharField(max_length=64)
    candidate = models.ForeignKey(
        "learning.LearningCandidate",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="events",
    )
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16, blank=True)
    note = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["namespace", "-created_at"], name="audit_ns_created"),
        ]

    def __str__(self):
        return f"{self.actor} {self.action} {self.target_type}:{self.target_id}"
