from django.urls import path

from learning.api.exports import ExportApi
from learning.api.otel import OtelTracesApi
from learning.api.webhooks import (
    WebhookDeliveriesApi,
    WebhookDetailApi,
    WebhookListCreateApi,
)

urlpatterns = [
    path("otel/v1/traces", OtelTracesApi.as_view(), name="otel-traces"),
    path(
        "otel/v1/traces/", OtelTracesApi.as_view(schema=None)
    ),  # same op, once in the schema
    path("exports/<str:export_format>/", ExportApi.as_view(), name="exports"),
    path("webhooks/", WebhookListCreateApi.as_view(), name="webhooks"),
    path(
        "webhooks/<int:webhook_id>/", WebhookDetailApi.as_view(), name="webhook-detail"
    ),
    path(
        "webhooks/<int:webhook_id>/deliveries/",
        WebhookDeliveriesApi.as_view(),
        name="webhook-deliveries",
    ),
]
