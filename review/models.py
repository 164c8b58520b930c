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
    # A decision's labels (ReviewTag); a canned reason's id is in data["reason"].
    tags = models.ManyToManyField("review.ReviewTag", blank=True, related_name="events")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["namespace", "-created_at"], name="audit_ns_created"),
        ]

    def __str__(self):
        return f"{self.actor} {self.action} {self.target_type}:{self.target_id}"


class ReviewTag(models.Model):
    """A label a reviewer puts on a decision ("run-specific", "wrong polarity" …),
    per namespace, edited by its admins; the dashboard counts them so the reflector's
    recurring faults show."""

    namespace = models.ForeignKey(
        "learning.Namespace", on_delete=models.CASCADE, related_name="review_tags"
    )
    slug = models.SlugField(max_length=50)
    label = models.CharField(max_length=100, blank=True)
    position = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["position", "slug"]
        constraints = [
            models.UniqueConstraint(
                fields=["namespace", "slug"], name="review_tag_unique_slug"
            )
        ]

    def __str__(self):
        return self.label or self.slug


class CannedReason(models.Model):
    """A reason to deny that reviewers of a namespace pick instead of typing it (keys
    1–9 in the deny dialog), with the tags it implies."""

    namespace = models.ForeignKey(
        "learning.Namespace", on_delete=models.CASCADE, related_name="canned_reasons"
    )
    text = models.CharField(max_length=500)
    tags = models.ManyToManyField(ReviewTag, blank=True, related_name="reasons")
    position = models.PositiveIntegerField(default=0)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self):
        return self.text


class Guideline(models.Model):
    """A namespace's reviewing guidelines (markdown), shown beside every candidate."""

    namespace = models.OneToOneField(
        "learning.Namespace", on_delete=models.CASCADE, related_name="guideline"
    )
    text = models.TextField(blank=True)
    updated_by = models.CharField(max_length=150, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"guidelines of {self.namespace_id}"
