"""Django admin for the learning app."""

import secrets

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from learning.models import Webhook, WebhookDelivery
from learning.webhooks import (
    WEBHOOK_EVENTS,
    webhook_delivery_redeliver,
    webhook_url_check,
)


class WebhookForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https")
    events = forms.MultipleChoiceField(
        choices=[(e, e) for e in WEBHOOK_EVENTS],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every event.",
    )
    secret = forms.CharField(
        required=False,
        help_text="Leave blank to generate one. Receivers verify "
        "X-Flywheel-Signature = sha256=HMAC-SHA256(secret, body).",
    )

    class Meta:
        model = Webhook
        fields = ["namespace", "url", "events", "secret", "active", "description"]

    def clean_secret(self):
        return self.cleaned_data["secret"] or "whsec_" + secrets.token_urlsafe(32)

    def clean_url(self):
        url = self.cleaned_data["url"]
        if not url.startswith(("http://", "https://")):
            raise ValidationError("Use an http(s) URL.")
        try:
            webhook_url_check(url)  # the same address check as the API
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["url"]) from None
        return url


class WebhookDeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    extra = 0
    can_delete = False
    fields = [
        "event",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "next_attempt_at",
        "delivered_at",
        "created_at",
    ]
    readonly_fields = fields
    ordering = ["-created_at"]
    max_num = 0
    show_change_link = True


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    form = WebhookForm
    list_display = ["url", "namespace", "events", "active", "created_at"]
    list_filter = ["active", "namespace"]
    inlines = [WebhookDeliveryInline]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user.get_username()
        super().save_model(request, obj, form, change)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "event",
        "webhook",
        "status",
        "attempts",
        "last_status_code",
        "created_at",
        "delivered_at",
    ]
    list_filter = ["status", "event"]
    list_select_related = ["webhook"]
    readonly_fields = [
        "webhook",
        "event_id",
        "event",
        "payload",
        "status",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "delivered_at",
        "created_at",
    ]
    actions = ["redeliver"]

    @admin.action(description="Deliver the selected events again")
    def redeliver(self, request, queryset):
        for delivery in queryset:
            webhook_delivery_redeliver(delivery=delivery)
        self.message_user(request, f"{queryset.count()} deliveries queued again.")


# --- Runs, tokens and learning candidates: read-mostly ------------------------------
# Writes go through the services (ingest, feedback, review actions) so that scores,
# audits and the audit trail stay right; the admin is for looking things up.
from django.utils import timezone  # noqa: E402
from django.utils.html import format_html  # noqa: E402

from learning.models import (  # noqa: E402
    ApiToken,
    CandidateEvidence,
    Feedback,
    LearningCandidate,
    Membership,
    Namespace,
    Reflection,
    Step,
    Trajectory,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Browse and search; no add, change or delete."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields or []

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class NamespaceForm(forms.ModelForm):
    """A namespace's reflection rules are checked field by field before they are
    stored (the format: learning/reflectors/offline/rules.py)."""

    class Meta:
        model = Namespace
        fields = ["slug", "name", "reflection_rules"]

    def clean_reflection_rules(self):
        from learning.reflectors.offline.rules import rules_check

        rules = self.cleaned_data.get("reflection_rules") or {}
        problems = rules_check(rules)
        if problems:
            raise ValidationError(problems)
        return rules


@admin.register(Namespace)
class NamespaceAdmin(admin.ModelAdmin):
    form = NamespaceForm
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "namespace", "role"]
    list_filter = ["role", "namespace"]
    list_select_related = ["user", "namespace"]
    search_fields = ["user__username", "namespace__slug"]
    autocomplete_fields = ["namespace"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are created with `manage.py create_token` (the raw key is shown once);
    here they can be looked up and revoked."""

    list_display = [
        "name",
        "namespace",
        "role",
        "key_prefix",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["role", "namespace", ("revoked_at", admin.EmptyFieldListFilter)]
    list_select_related = ["namespace"]
    search_fields = ["name", "key_prefix"]
    readonly_fields = [
        "namespace",
        "name",
        "role",
        "key_prefix",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    exclude = ["key_hash"]
    actions = ["revoke"]

    def has_add_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        self.message_user(request, f"{count} tokens revoked.")


class StepInline(ReadOnlyInline):
    model = Step
    fields = ["index", "type", "tool", "description", "result", "tokens"]
    ordering = ["index"]


class FeedbackInline(ReadOnlyInline):
    model = Feedback
    fields = ["created_at", "feedback_type", "score", "source", "message"]


@admin.register(Trajectory)
class TrajectoryAdmin(ReadOnlyAdmin):
    list_display = [
        "__str__",
        "namespace",
        "agent",
        "task_type",
        "status",
        "success_score",
        "effective_score",
        "needs_relearning",
        "reflection_status",
        "created_at",
    ]
    list_filter = [
        "status",
        "reflection_status",
        "needs_relearning",
        "redacted",
        "namespace",
        "task_type",
    ]
    list_select_related = ["namespace"]
    search_fields = ["=id", "external_id", "task_description", "user_id", "agent"]
    date_hierarchy = "created_at"
    inlines = [StepInline, FeedbackInline]
    show_full_result_count = False


class CandidateEvidenceInline(ReadOnlyInline):
    model = CandidateEvidence
    fields = ["trajectory", "step_indexes", "created_at"]
    raw_id_fields = ["trajectory"]


@admin.register(Reflection)
class ReflectionAdmin(ReadOnlyAdmin):
    list_display = [
        "pk",
        "namespace",
        "trajectory",
        "task_type",
        "is_batch",
        "reflector",
        "fallback",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "created_at",
    ]
    list_filter = ["reflector", "fallback", "is_batch", "namespace"]
    list_select_related = ["namespace", "trajectory"]
    search_fields = ["trajectory__external_id", "task_type"]


@admin.register(LearningCandidate)
class LearningCandidateAdmin(ReadOnlyAdmin):
    """Review decisions belong to the console (they are audited); this is a lookup."""

    list_display = [
        "pk",
        "kind",
        "short_content",
        "status",
        "confidence",
        "max_severity",
        "namespace",
        "playbook",
        "evidence_count",
        "created_at",
    ]
    list_filter = ["status", "kind", "max_severity", "source", "namespace"]
    list_select_related = ["namespace", "playbook"]
    search_fields = ["content", "rationale", "fingerprint"]
    inlines = [CandidateEvidenceInline]

    @admin.display(description="content")
    def short_content(self, obj):
        return format_html("<span title='{}'>{}</span>", obj.content, obj.content[:80])
