"""OTLP/HTTP traces endpoint: protobuf or JSON bodies, optionally gzip-compressed.

Answers follow the OTLP/HTTP specification
(https://opentelemetry.io/docs/specs/otlp/#otlphttp-response), in the encoding of the
request: success is an ``ExportTraceServiceResponse`` (with a partial-success message
when something accepted is worth saying), every 4xx and 5xx a ``google.rpc.Status``
whose message names the problem.
"""

import zlib

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.parsers import BaseParser
from rest_framework.response import Response
from rest_framework.views import APIView

from learning.api.errors import PayloadTooLarge, exception_handler
from learning.otel import (
    OtelIngestResult,
    OtlpDecodeError,
    OtlpInvalid,
    otel_traces_ingest,
    spans_from_json,
    spans_from_protobuf,
)
from learning.throttling import IngestRateThrottle

PROTOBUF = "application/x-protobuf"
# google.rpc.Code for the HTTP statuses this endpoint answers (the spec lets clients
# ignore it; it helps whoever reads a log).
RPC_CODES = {
    400: 3,  # INVALID_ARGUMENT
    401: 16,  # UNAUTHENTICATED
    403: 7,  # PERMISSION_DENIED
    404: 5,  # NOT_FOUND
    405: 12,  # UNIMPLEMENTED
    409: 10,  # ABORTED
    413: 8,  # RESOURCE_EXHAUSTED
    415: 3,
    429: 8,
    503: 14,  # UNAVAILABLE
}
MAX_MESSAGE = 4000


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
    media_type = PROTOBUF
    decode = staticmethod(spans_from_protobuf)


class OtlpJsonParser(_OtlpParser):
    media_type = "application/json"
    decode = staticmethod(spans_from_json)


def _is_protobuf(request) -> bool:
    return (request.META.get("CONTENT_TYPE") or "").startswith(PROTOBUF)


def _text(detail) -> str:
    """DRF's error data (a string, a list, a dict of fields) as one message."""
    if isinstance(detail, dict):
        parts = [
            _text(value)
            if key in ("detail", "non_field_errors")
            else f"{key}: {_text(value)}"
            for key, value in detail.items()
            if key != "code"
        ]
        return "; ".join(p for p in parts if p)
    if isinstance(detail, list):
        return "; ".join(_text(item) for item in detail)
    return str(detail)


def _status_response(request, code: int, message: str, headers=None) -> HttpResponse:
    message = message[:MAX_MESSAGE]
    rpc_code = RPC_CODES.get(code, 13)  # INTERNAL
    if _is_protobuf(request):
        from google.rpc.status_pb2 import Status

        response = HttpResponse(
            Status(code=rpc_code, message=message).SerializeToString(),
            content_type=PROTOBUF,
            status=code,
        )
    else:
        response = Response({"code": rpc_code, "message": message}, status=code)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def otlp_exception_handler(exc, context):
    """The API's error handling (every failure a 4xx naming it, never an HTML 500),
    answered as the OTLP ``Status`` the exporter expects."""
    if isinstance(exc, OtlpInvalid):
        exc = exceptions.ValidationError({"detail": str(exc)})
    response = exception_handler(exc, context)
    headers = {
        name: response[name]
        for name in ("Retry-After", "WWW-Authenticate")
        if response.has_header(name)
    }
    return _status_response(
        context["request"], response.status_code, _text(response.data), headers
    )


def _export_response(request, result: OtelIngestResult) -> HttpResponse:
    message = "; ".join(result.warnings)[:MAX_MESSAGE]
    if _is_protobuf(request):
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceResponse,
        )

        response = ExportTraceServiceResponse()
        if message:
            response.partial_success.error_message = message
        return HttpResponse(response.SerializeToString(), content_type=PROTOBUF)
    partial = {"errorMessage": message} if message else {}
    return Response({"partialSuccess": partial})


class OtelTracesApi(APIView):
    """OTLP/HTTP trace export (``/v1/traces`` of an OTLP endpoint)."""

    parser_classes = [OtlpProtobufParser, OtlpJsonParser]
    throttle_classes = [IngestRateThrottle]

    def get_exception_handler(self):
        return otlp_exception_handler

    @extend_schema(
        operation_id="otel_traces_export",
        request={PROTOBUF: bytes, "application/json": dict},
        responses={
            200: OpenApiResponse(
                description="ExportTraceServiceResponse (partialSuccess.errorMessage "
                "carries warnings: evaluations not recorded, late spans attached)"
            ),
            400: OpenApiResponse(
                description="google.rpc.Status: the message names the trace, span "
                "and field or attribute; nothing was stored"
            ),
        },
        description=(
            "OTLP/HTTP traces (protobuf or JSON, gzip allowed) in the GenAI (gen_ai.*) "
            "or OpenInference conventions. A trace's agent span → run, tool spans → "
            "tool_call steps, model calls → message steps, other spans → steps; "
            "gen_ai.evaluation.result events → feedback. Errors are google.rpc.Status "
            "bodies in the request's encoding."
        ),
    )
    def post(self, request):
        token = request.auth
        result = otel_traces_ingest(
            namespace=token.namespace, agent=token.name, spans=request.data
        )
        return _export_response(request, result)
