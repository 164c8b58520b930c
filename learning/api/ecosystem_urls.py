from django.urls import path

from learning.api.exports import ExportApi
from learning.api.otel import OtelTracesApi

urlpatterns = [
    path("otel/v1/traces", OtelTracesApi.as_view(), name="otel-traces"),
    path("otel/v1/traces/", OtelTracesApi.as_view(schema=None)),  # same op, once in the schema
    path("exports/<str:export_format>/", ExportApi.as_view(), name="exports"),
]
