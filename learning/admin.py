"""Django admin for the learning app."""
import secrets

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from learning.models import Webhook, WebhookDelivery
from learning.webhooks import WEBHOOK_EVENTS, webhook_delivery_redeliver


class WebhookForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https")
    events = forms.MultipleChoiceField(
        choices=[(e, e) for e in WEBHOOK_EVENTS], required=False,
        widget=forms.CheckboxSelectMultiple, help_text="None ticked: every event.",
    )
    secret = forms.CharField(
        required=False, help_text="Leave blank to generate one. Receivers verify "
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
        return url


class WebhookDeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    extra = 0
    can_delete = False
    fields = ["event", "status", "attempts", "last_status_code", "last_error",
              "next_attempt_at", "delivered_at", "created_at"]
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
    list_display = ["event", "webhook", "status", "attempts", "last_status_code",
                    "created_at", "delivered_at"]
    list_filter = ["status", "event"]
    list_select_related = ["webhook"]
    readonly_fields = ["webhook", "event_id", "event", "payload", "status", "attempts",
                       "next_attempt_at", "last_status_code", "last_error", "delivered_at",
                       "created_at"]
    actions = ["redeliver"]

    @admin.action(description="Deliver the selected events again")
    def redeliver(self, request, queryset):
        for delivery in queryset:
            webhook_delivery_redeliver(delivery=delivery)
        self.message_user(request, f"{queryset.count()} deliveries queued again.")
