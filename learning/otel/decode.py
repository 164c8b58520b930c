"""Decoding OTLP/HTTP trace exports, protobuf or JSON, into `OtelSpan` objects.

The encoding's own rules are checked here, for every span of the body, and a problem
names where it is (``resourceSpans[0].scopeSpans[0].spans[2].attributes["tool.name"]``):
trace and span ids of the right length, unsigned 64-bit times, 64-bit integers,
text PostgreSQL can store (no NUL, no lone surrogate: `payloads.text_problem`) and
values nested at most `MAX_JSON_DEPTH` deep, the REST API's JSON limit. Nothing is
stored from a body that fails them.
"""

import base64
import json
import math
from dataclasses import dataclass, field
from typing import Any

from learning.limits import MAX_JSON_DEPTH
from learning.services.payloads import text_problem

MAX_UINT64 = 2**64 - 1
MIN_INT64, MAX_INT64 = -(2**63), 2**63 - 1
TRACE_ID_BYTES, SPAN_ID_BYTES = 16, 8
STATUS_CODES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
STATUS_ERROR = 2  # opentelemetry.proto.trace.v1.Status.StatusCode.STATUS_CODE_ERROR


class OtlpDecodeError(ValueError):
    """The body is not a valid OTLP ExportTraceServiceRequest; the message names
    where."""


@dataclass
class OtelEvent:
    name: str
    time_ns: int
    attributes: dict[str, Any]


@dataclass
class OtelSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    events: list[OtelEvent] = field(default_factory=list)

    @property
    def label(self) -> str:
        """How error messages name the span."""
        return f'span {self.span_id} "{self.name[:80]}"'


def _text(value: str, where: str) -> str:
    problem = text_problem(value)
    if problem:
        raise OtlpDecodeError(f"{where}: {problem}")
    return value


def _too_deep(where: str) -> OtlpDecodeError:
    return OtlpDecodeError(f"{where}: nested deeper than {MAX_JSON_DEPTH} levels.")


# --- protobuf ---------------------------------------------------------------------


def _pb_value(value, where: str, depth: int) -> Any:
    if depth > MAX_JSON_DEPTH:
        raise _too_deep(where)
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [
            _pb_value(v, f"{where}[{i}]", depth + 1)
            for i, v in enumerate(value.array_value.values)
        ]
    if kind == "kvlist_value":
        return _pb_attributes(value.kvlist_value.values, where, depth + 1)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if kind == "string_value":
        return _text(value.string_value, where)
    return getattr(value, kind)


def _pb_attributes(items, where: str, depth: int = 0) -> dict[str, Any]:
    out = {}
    for kv in items:
        key = _text(kv.key, f"{where}: attribute key")
        out[key] = _pb_value(kv.value, f'{where}["{key}"]', depth)
    return out


def _pb_id(raw: bytes, where: str, size: int, *, required: bool) -> str:
    if not raw and not required:
        return ""
    if len(raw) != size:
        raise OtlpDecodeError(f"{where}: must be {size} bytes, got {len(raw)}.")
    return raw.hex()


def _pb_span(span, resource: dict[str, Any], where: str) -> OtelSpan:
    return OtelSpan(
        trace_id=_pb_id(
            span.trace_id, f"{where}.traceId", TRACE_ID_BYTES, required=True
        ),
        span_id=_pb_id(span.span_id, f"{where}.spanId", SPAN_ID_BYTES, required=True),
        parent_span_id=_pb_id(
            span.parent_span_id, f"{where}.parentSpanId", SPAN_ID_BYTES, required=False
        ),
        name=_text(span.name, f"{where}.name"),
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
        status_code=span.status.code,
        status_message=_text(span.status.message, f"{where}.status.message"),
        attributes=_pb_attributes(span.attributes, f"{where}.attributes"),
        resource=resource,
        events=[
            OtelEvent(
                name=_text(e.name, f"{where}.events[{i}].name"),
                time_ns=e.time_unix_nano,
                attributes=_pb_attributes(
                    e.attributes, f"{where}.events[{i}].attributes"
                ),
            )
            for i, e in enumerate(span.events)
        ],
    )


def spans_from_protobuf(body: bytes) -> list[OtelSpan]:
    """Decode an ``ExportTraceServiceRequest`` in the protobuf encoding."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RecursionError) as exc:
        raise OtlpDecodeError(
            f"body: not an OTLP protobuf ExportTraceServiceRequest ({exc})"
        ) from None
    spans = []
    for r, resource_spans in enumerate(request.resource_spans):
        where = f"resourceSpans[{r}]"
        resource = _pb_attributes(
            resource_spans.resource.attributes, f"{where}.resource.attributes"
        )
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            for i, span in enumerate(scope_spans.spans):
                spans.append(
                    _pb_span(span, resource, f"{where}.scopeSpans[{s}].spans[{i}]")
                )
    return spans


# --- JSON (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding) ---------


def _get(obj: dict, name: str) -> Any:
    """A field by its lowerCamelCase JSON name, or the proto name some senders use."""
    if name in obj:
        return obj[name]
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
    return obj.get(snake)


def _object(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise OtlpDecodeError(
            f"{where}: must be an object, got {type(value).__name__}."
        )
    return value


def _array(value: Any, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise OtlpDecodeError(f"{where}: must be a list, got {type(value).__name__}.")
    return value


def _integer(value: Any, where: str, low: int, high: int, kind: str) -> int:
    """An integer of the JSON encoding: a number or a decimal string (int64 and
    fixed64 are strings in proto3 JSON)."""
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        digits = value.strip()
        if digits.lstrip("-").isdigit() and digits.isascii():
            # More than 40 digits is out of any range here: no need to convert it.
            number = int(digits) if len(digits) <= 40 else high + 1
    if number is None:
        raise OtlpDecodeError(f"{where}: must be {kind}, got {_shown(value)}.")
    if not low <= number <= high:
        raise OtlpDecodeError(
            f"{where}: must be {kind} ({low} to {high}), got {_shown(value)}."
        )
    return number


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _time(value: Any, where: str) -> int:
    if value in (None, ""):
        return 0
    return _integer(
        value, where, 0, MAX_UINT64, "an unsigned 64-bit integer of nanoseconds"
    )


def _double(value: Any, where: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    special = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
    if isinstance(value, str):
        if value in special:
            return special[value]
        try:
            return float(value)
        except ValueError:
            pass
    raise OtlpDecodeError(f"{where}: must be a number, got {_shown(value)}.")


def _json_value(value: Any, where: str, depth: int) -> Any:  # noqa: C901 - one branch per AnyValue kind of the spec
    if depth > MAX_JSON_DEPTH:
        raise _too_deep(where)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):  # lenient: a bare value instead of {"stringValue": …}
        return _text(value, where)
    value = _object(value, where)
    if "stringValue" in value or "string_value" in value:
        text = _get(value, "stringValue")
        if not isinstance(text, str):
            raise OtlpDecodeError(f"{where}: stringValue must be a string.")
        return _text(text, where)
    if "boolValue" in value or "bool_value" in value:
        return bool(_get(value, "boolValue"))
    if "intValue" in value or "int_value" in value:
        return _integer(
            _get(value, "intValue"), where, MIN_INT64, MAX_INT64, "a 64-bit integer"
        )
    if "doubleValue" in value or "double_value" in value:
        return _double(_get(value, "doubleValue"), where)
    if "arrayValue" in value or "array_value" in value:
        items = _array(_object(_get(value, "arrayValue"), where).get("values"), where)
        return [
            _json_value(item, f"{where}[{i}]", depth + 1)
            for i, item in enumerate(items)
        ]
    if "kvlistValue" in value or "kvlist_value" in value:
        items = _object(_get(value, "kvlistValue"), where).get("values")
        return _json_attributes(items, where, depth + 1)
    if "bytesValue" in value or "bytes_value" in value:
        data = _get(value, "bytesValue")
        if not isinstance(data, str):
            raise OtlpDecodeError(f"{where}: bytesValue must be a base64 string.")
        return _text(data, where)
    return None  # an empty AnyValue


def _json_attributes(items: Any, where: str, depth: int = 0) -> dict[str, Any]:
    out = {}
    for i, item in enumerate(_array(items, where)):
        item = _object(item, f"{where}[{i}]")
        key = item.get("key")
        if not isinstance(key, str):
            raise OtlpDecodeError(f"{where}[{i}]: every attribute needs a string key.")
        key = _text(key, f"{where}[{i}].key")
        out[key] = _json_value(item.get("value"), f'{where}["{key}"]', depth)
    return out


def _json_id(value: Any, where: str, size: int, *, required: bool) -> str:
    # The OTLP JSON encoding writes trace and span ids as hex, not base64.
    if not value:
        if required:
            raise OtlpDecodeError(f"{where}: required.")
        return ""
    if not isinstance(value, str):
        raise OtlpDecodeError(f"{where}: must be a hex string, got {_shown(value)}.")
    raw = b""
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        try:  # some SDKs send the proto3 JSON default (base64) instead
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            pass
    if len(raw) != size:
        raise OtlpDecodeError(
            f"{where}: must be {size} bytes as {2 * size} hex digits, got {_shown(value)}."
        )
    return raw.hex()


def _json_status_code(code: Any, where: str) -> int:
    if isinstance(code, str) and code in STATUS_CODES:
        return STATUS_CODES[code]
    if code in (None, ""):
        return 0
    return _integer(code, where, 0, 2, "a status code")


def _json_span(span: Any, resource: dict[str, Any], where: str) -> OtelSpan:
    span = _object(span, where)
    status = _object(span.get("status"), f"{where}.status")
    name = span.get("name") or ""
    message = status.get("message") or ""
    if not isinstance(name, str) or not isinstance(message, str):
        raise OtlpDecodeError(f"{where}: name and status.message must be strings.")
    return OtelSpan(
        trace_id=_json_id(
            _get(span, "traceId"), f"{where}.traceId", TRACE_ID_BYTES, required=True
        ),
        span_id=_json_id(
            _get(span, "spanId"), f"{where}.spanId", SPAN_ID_BYTES, required=True
        ),
        parent_span_id=_json_id(
            _get(span, "parentSpanId"),
            f"{where}.parentSpanId",
            SPAN_ID_BYTES,
            required=False,
        ),
        name=_text(name, f"{where}.name"),
        start_ns=_time(_get(span, "startTimeUnixNano"), f"{where}.startTimeUnixNano"),
        end_ns=_time(_get(span, "endTimeUnixNano"), f"{where}.endTimeUnixNano"),
        status_code=_json_status_code(status.get("code"), f"{where}.status.code"),
        status_message=_text(message, f"{where}.status.message"),
        attributes=_json_attributes(span.get("attributes"), f"{where}.attributes"),
        resource=resource,
        events=[
            _json_event(event, f"{where}.events[{i}]")
            for i, event in enumerate(_array(span.get("events"), f"{where}.events"))
        ],
    )


def _json_event(event: Any, where: str) -> OtelEvent:
    event = _object(event, where)
    name = event.get("name") or ""
    if not isinstance(name, str):
        raise OtlpDecodeError(f"{where}.name: must be a string.")
    return OtelEvent(
        name=_text(name, f"{where}.name"),
        time_ns=_time(_get(event, "timeUnixNano"), f"{where}.timeUnixNano"),
        attributes=_json_attributes(event.get("attributes"), f"{where}.attributes"),
    )


def spans_from_json(body: bytes) -> list[OtelSpan]:
    """Decode an ``ExportTraceServiceRequest`` in the OTLP JSON encoding."""
    try:
        data = json.loads(body)
    except RecursionError:
        raise OtlpDecodeError("body: JSON nested too deeply to decode.") from None
    except ValueError as exc:  # also a number of more than 4,300 digits
        raise OtlpDecodeError(f"body: invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise OtlpDecodeError("body: must be a JSON object with resourceSpans.")
    spans = []
    for r, resource_spans in enumerate(
        _array(_get(data, "resourceSpans"), "resourceSpans")
    ):
        where = f"resourceSpans[{r}]"
        resource_spans = _object(resource_spans, where)
        resource = _json_attributes(
            _object(resource_spans.get("resource"), f"{where}.resource").get(
                "attributes"
            ),
            f"{where}.resource.attributes",
        )
        scopes = _array(_get(resource_spans, "scopeSpans"), f"{where}.scopeSpans")
        for s, scope_spans in enumerate(scopes):
            scope_where = f"{where}.scopeSpans[{s}]"
            scope_spans = _object(scope_spans, scope_where)
            for i, span in enumerate(
                _array(scope_spans.get("spans"), f"{scope_where}.spans")
            ):
                spans.append(_json_span(span, resource, f"{scope_where}.spans[{i}]"))
    return spans
