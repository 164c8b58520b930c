"""Training exports over the API: streamed JSONL."""

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.views import APIView

from learning.api.auth import allows
from learning.services.exports import (
    EXPORT_FORMATS,
    ExportFilterError,
    export_filters_parse,
    export_lines,
)


class ExportApi(APIView):
    """Training data as JSONL: sft examples, preference pairs or RL episodes."""

    permission_classes = [allows("exports.read")]

    @extend_schema(
        operation_id="exports_retrieve",
        parameters=[
            OpenApiParameter(
                "export_format", str, OpenApiParameter.PATH, enum=list(EXPORT_FORMATS)
            ),
            OpenApiParameter("task_type", str),
            OpenApiParameter(
                "min_score",
                float,
                description="effective score floor "
                "(sft default 0.8; preferences: of the chosen run)",
            ),
            OpenApiParameter(
                "max_score",
                float,
                description="effective score ceiling "
                "(preferences: of the rejected run)",
            ),
            OpenApiParameter("since", OpenApiTypes.DATETIME),
            OpenApiParameter("until", OpenApiTypes.DATETIME),
            OpenApiParameter("limit", int),
        ],
        responses={200: OpenApiResponse(description="JSONL, one record per line")},
    )
    def get(self, request, export_format):
        # Not `format`: DRF reads that URL kwarg as a renderer suffix.
        format = export_format
        if format not in EXPORT_FORMATS:
            raise exceptions.NotFound(
                f"No export '{format}'; use one of {', '.join(EXPORT_FORMATS)}."
            )
        try:
            filters = export_filters_parse(params=request.query_params, format=format)
        except ExportFilterError as exc:
            raise exceptions.ValidationError(exc.errors)
        response = StreamingHttpResponse(
            export_lines(
                namespace=request.auth.namespace, format=format, filters=filters
            ),
            content_type="application/x-ndjson",
        )
        stamp = request.auth.namespace.slug
        response["Content-Disposition"] = (
            f'attachment; filename="{stamp}-{format}.jsonl"'
        )
        return response
