"""OTLP/HTTP traces endpoint: protobuf or JSON bodies, optionally gzip-compressed."""

import zlib

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.parsers import BaseParser
from rest_framework.response import Response
from rest_framework.views import APIView

from learning.api.errors import PayloadTooLarge
from learning.otel import (
    OtlpDecodeError,
    otel_traces_ingest,
    spans_from_json,
    spans_from_protobuf,
)
from learning.throttling import IngestRateThrottle


def _decompressed(stream, encoding: str) -> bytes:
    limit = settings.FLYWHEEL_MAX_BODY_BYTES
    raw = stream.read() if stream is not None else b""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "deflate"):
        raise exceptions.UnsupportedMediaType(
            encoding,
            detail=f"Content-Encoding '{encoding}' is not supported; use gzip.",
        )
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    decompressor = zlib.decompressobj(wbits)
    try:
        # Bounded: a small gzip body must not expand past the body limit.
        body = decompressor.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise exceptions.ParseError(f"body: invalid {encoding} data ({exc})")
    if len(body) > limit or decompressor.unconsumed_tail:
        raise PayloadTooLarge(f"Decompressed body is over the limit of {limit} bytes.")
    return body


class _OtlpParser(BaseParser):
    decode = None

    def parse(self, stream, media_type=None, parser_context=None):
        request = parser_context["request"]
        body = _decompressed(stream, request.META.get("HTTP_CONTENT_ENCODING", ""))
        try:
            return type(self).decode(body)
        except OtlpDecodeError as exc:
            raise exceptions.ParseError(str(exc))


class OtlpProtobufParser(_OtlpParser):
    media_type = "application/x-protobuf"
    decode = staticmethod(spans_from_protobuf)


class OtlpJsonParser(_OtlpParser):
    media_type = "application/json"
    decode = staticmethod(spans_from_json)


class OtelTracesApi(APIView):
    """OTLP/HTTP trace export (``/v1/traces`` of an OTLP endpoint)."""

    parser_classes = [OtlpProtobufParser, OtlpJsonParser]
    throttle_classes = [IngestRateThrottle]

    @extend_schema(
        operation_id="otel_traces_export",
        request={"application/x-protobuf": bytes, "application/json": dict},
        responses={200: OpenApiResponse(description="ExportTraceServiceResponse")},
        description=(
            "OTLP/HTTP traces (protobuf or JSON, gzip allowed). GenAI spans become runs: "
            "invoke_agent → run, execute_tool → tool_call steps, chat → message steps."
        ),
    )
    def post(self, request):
        spans = request.data
        token = request.auth
        otel_traces_ingest(namespace=token.namespace, agent=token.name, spans=spans)
        if request.content_type.startswith("application/x-protobuf"):
            from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
                ExportTraceServiceResponse,
            )

            return HttpResponse(
                ExportTraceServiceResponse().SerializeToString(),
                content_type="application/x-protobuf",
            )
        return Response({"partialSuccess": {}})
