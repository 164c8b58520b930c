"""Building OTLP/JSON trace exports by hand, and reading the endpoint's answers."""

import json
import uuid

URL = "/api/v1/otel/v1/traces"
T0 = 1_700_000_000_000_000_000  # ns


def value(v):
    """An OTLP AnyValue in the JSON encoding."""
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, list):
        return {"arrayValue": {"values": [value(x) for x in v]}}
    if isinstance(v, dict):
        return {"kvlistValue": {"values": attrs(v)}}
    return {"stringValue": v}


def attrs(d: dict) -> list[dict]:
    return [{"key": k, "value": value(v)} for k, v in d.items()]


def new_id(size: int = 16) -> str:
    return uuid.uuid4().hex[: 2 * size]


def span(
    trace_id: str,
    name: str,
    attributes: dict | None = None,
    *,
    span_id: str | None = None,
    parent: str = "",
    start_ms: int = 0,
    end_ms: int = 1,
    status: int = 1,
    message: str = "",
    events: list[dict] | None = None,
) -> dict:
    out = {
        "traceId": trace_id,
        "spanId": span_id or new_id(8),
        "name": name,
        "startTimeUnixNano": str(T0 + start_ms * 1_000_000),
        "endTimeUnixNano": str(T0 + end_ms * 1_000_000),
        "attributes": attrs(attributes or {}),
        "status": {"code": status, "message": message},
        "events": events or [],
    }
    if parent:
        out["parentSpanId"] = parent
    return out


def event(name: str, attributes: dict, at_ms: int = 1) -> dict:
    return {
        "name": name,
        "timeUnixNano": str(T0 + at_ms * 1_000_000),
        "attributes": attrs(attributes),
    }


def export(*spans: dict, service: str = "oi-bot") -> dict:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": attrs({"service.name": service})},
                "scopeSpans": [{"scope": {"name": "test"}, "spans": list(spans)}],
            }
        ]
    }


def post(client, body, **extra):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.generic(
        "POST",
        URL,
        data,
        content_type=extra.pop("content_type", "application/json"),
        **extra,
    )


def error_message(response) -> str:
    """The message of an OTLP error answer (google.rpc.Status, JSON or protobuf)."""
    if response["Content-Type"].startswith("application/x-protobuf"):
        from google.rpc.status_pb2 import Status

        status = Status()
        status.ParseFromString(response.content)
        return status.message
    body = response.json()
    assert set(body) == {"code", "message"}, body
    return body["message"]


def partial_message(response) -> str:
    """The partial-success message of an OTLP success answer ("" when none)."""
    if response["Content-Type"].startswith("application/x-protobuf"):
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceResponse,
        )

        answer = ExportTraceServiceResponse()
        answer.ParseFromString(response.content)
        assert answer.partial_success.rejected_spans == 0
        return answer.partial_success.error_message
    return response.json()["partialSuccess"].get("errorMessage", "")
