"""OpenTelemetry ingest: OTLP/HTTP traces (protobuf or JSON) with the GenAI semantic
conventions become runs through the same ingest service as the REST API.

Mapping (https://opentelemetry.io/docs/specs/semconv/gen-ai/):
- the outermost ``invoke_agent`` span of a trace is the run (external_id
  ``otel-<trace id>``); its status gives the outcome, ``gen_ai.conversation.id`` the
  session_id, ``gen_ai.agent.name`` the agent;
- ``execute_tool`` spans are ``tool_call`` steps, ``chat`` spans are ``message`` steps
  carrying their token usage; nested ``invoke_agent`` spans are ``action`` steps.
Optional ``flywheel.*`` attributes on the agent span override what the conventions
cannot say: ``flywheel.task_type``, ``flywheel.task_description``, ``flywheel.status``,
``flywheel.success_score``, ``flywheel.playbook_versions``.

Spans of one trace may arrive in several exports (children end before their agent
span): a trace seen without its agent span yet is stored as a ``running`` run and
completed when the agent span arrives. Steps remember their span id, so a retried
export never duplicates them.
"""

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

from django.db import transaction

from learning.models import Namespace, RunStatus, Step, Trajectory
from learning.services.redaction import redact_text
from learning.services.runs import run_complete, run_steps_append, runs_ingest

EXTERNAL_ID_PREFIX = "otel-"
STATUS_ERROR = 2  # opentelemetry.proto.trace.v1.Status.StatusCode.STATUS_CODE_ERROR
GENAI_OPERATIONS = {
    "invoke_agent",
    "chat",
    "execute_tool",
    "text_completion",
    "generate_content",
    "create_agent",
    "embeddings",
}
MAX_TEXT = 20_000
PLACEHOLDER_TASK = "OpenTelemetry trace {trace_id} (agent span not received yet)"


class OtlpDecodeError(ValueError):
    """The body is not a valid OTLP ExportTraceServiceRequest."""


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
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def operation(self) -> str:
        op = self.attributes.get("gen_ai.operation.name")
        if op:
            return str(op)
        first = self.name.split(" ", 1)[0]
        return first if first in GENAI_OPERATIONS else ""

    @property
    def started_at(self) -> datetime | None:
        return _ns_to_datetime(self.start_ns)

    @property
    def ended_at(self) -> datetime | None:
        return _ns_to_datetime(self.end_ns)


@dataclass
class OtelIngestResult:
    spans_received: int = 0
    spans_rejected: int = 0
    runs_created: list[str] = field(default_factory=list)
    runs_updated: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# --- decoding ----------------------------------------------------------------------


def _ns_to_datetime(value: int) -> datetime | None:
    if not value:
        return None
    return datetime.fromtimestamp(value / 1e9, tz=dt_timezone.utc)


def _pb_any_value(value) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_pb_any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _pb_any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, kind)


def _pb_attributes(items) -> dict[str, Any]:
    return {kv.key: _pb_any_value(kv.value) for kv in items}


def spans_from_protobuf(body: bytes) -> list[OtelSpan]:
    """Decode an ``ExportTraceServiceRequest`` in the protobuf encoding."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise OtlpDecodeError(
            f"body: not an OTLP protobuf ExportTraceServiceRequest ({exc})"
        )
    spans = []
    for resource_spans in request.resource_spans:
        resource = _pb_attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    OtelSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        name=span.name,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        status_code=span.status.code,
                        status_message=span.status.message,
                        attributes=_pb_attributes(span.attributes),
                        resource=resource,
                        events=[
                            {
                                "name": e.name,
                                "time_ns": e.time_unix_nano,
                                "attributes": _pb_attributes(e.attributes),
                            }
                            for e in span.events
                        ],
                    )
                )
    return spans


def _json_any_value(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return int(value["intValue"])  # int64 is a string in the JSON encoding
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [
            _json_any_value(v) for v in (value["arrayValue"] or {}).get("values", [])
        ]
    if "kvlistValue" in value:
        return _json_attributes((value["kvlistValue"] or {}).get("values", []))
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def _json_attributes(items: Any) -> dict[str, Any]:
    if not isinstance(items, list):
        raise OtlpDecodeError("attributes: must be a list of {key, value}")
    out = {}
    for item in items:
        if not isinstance(item, dict) or "key" not in item:
            raise OtlpDecodeError("attributes: every attribute needs a key")
        out[str(item["key"])] = _json_any_value(item.get("value"))
    return out


def _json_id(value: Any, name: str, *, required: bool) -> str:
    # The OTLP JSON encoding writes trace and span ids as hex, not base64.
    if not value:
        if required:
            raise OtlpDecodeError(f"{name}: required")
        return ""
    text = str(value)
    try:
        return bytes.fromhex(text).hex()
    except ValueError:
        pass
    try:  # some SDKs send the proto3 JSON default (base64) instead
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raw = b""
    if len(raw) in (8, 16):
        return raw.hex()
    raise OtlpDecodeError(f"{name}: must be a hex string, got {value!r}")


def spans_from_json(body: bytes) -> list[OtelSpan]:
    """Decode an ``ExportTraceServiceRequest`` in the OTLP JSON encoding."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OtlpDecodeError(f"body: invalid JSON ({exc})")
    if not isinstance(data, dict):
        raise OtlpDecodeError("body: must be a JSON object with resourceSpans")
    resource_spans_list = data.get("resourceSpans", data.get("resource_spans", []))
    if not isinstance(resource_spans_list, list):
        raise OtlpDecodeError("resourceSpans: must be a list")
    spans = []
    try:
        for resource_spans in resource_spans_list:
            resource = _json_attributes(
                (resource_spans.get("resource") or {}).get("attributes", [])
            )
            for scope_spans in resource_spans.get("scopeSpans", []) or []:
                for span in scope_spans.get("spans", []) or []:
                    status = span.get("status") or {}
                    spans.append(
                        OtelSpan(
                            trace_id=_json_id(
                                span.get("traceId"), "traceId", required=True
                            ),
                            span_id=_json_id(
                                span.get("spanId"), "spanId", required=True
                            ),
                            parent_span_id=_json_id(
                                span.get("parentSpanId"), "parentSpanId", required=False
                            ),
                            name=str(span.get("name", "")),
                            start_ns=int(span.get("startTimeUnixNano") or 0),
                            end_ns=int(span.get("endTimeUnixNano") or 0),
                            status_code=_json_status_code(status.get("code")),
                            status_message=str(status.get("message") or ""),
                            attributes=_json_attributes(span.get("attributes", [])),
                            resource=resource,
                            events=[
                                {
                                    "name": e.get("name", ""),
                                    "time_ns": int(e.get("timeUnixNano") or 0),
                                    "attributes": _json_attributes(
                                        e.get("attributes", [])
                                    ),
                                }
                                for e in span.get("events", []) or []
                            ],
                        )
                    )
    except (AttributeError, TypeError, ValueError) as exc:
        if isinstance(exc, OtlpDecodeError):
            raise
        raise OtlpDecodeError(f"resourceSpans: malformed span ({exc})")
    return spans


def _json_status_code(code: Any) -> int:
    if isinstance(code, str):
        return {
            "STATUS_CODE_UNSET": 0,
            "STATUS_CODE_OK": 1,
            "STATUS_CODE_ERROR": 2,
        }.get(code, int(code) if code.isdigit() else 0)
    return int(code or 0)


# --- mapping -----------------------------------------------------------------------


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _json_attr(value: Any) -> Any:
    """GenAI message and argument attributes are JSON strings; parse when they are."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _message_text(message: Any) -> str:
    """Text of one GenAI message: ``{"role", "parts": [{"type": "text", "content"}]}``
    (current conventions) or ``{"role", "content"}``."""
    if isinstance(message, str):
        return message
    if not isinstance(message, dict):
        return ""
    if isinstance(message.get("parts"), list):
        texts = []
        for part in message["parts"]:
            if isinstance(part, dict) and part.get("type") in (None, "text"):
                texts.append(str(part.get("content", "")))
            elif isinstance(part, dict) and part.get("type") == "tool_call":
                texts.append(f"[tool call {part.get('name', '')}]")
        return "\n".join(t for t in texts if t)
    content = message.get("content")
    if isinstance(content, list):
        return "\n".join(
            str(c.get("text", ""))
            for c in content
            if isinstance(c, dict) and c.get("text")
        )
    return str(content or "")


def _messages(span: OtelSpan, key: str) -> list[Any]:
    value = _json_attr(span.attributes.get(key))
    if isinstance(value, list):
        return value
    return []


def _first_user_text(span: OtelSpan) -> str:
    for message in _messages(span, "gen_ai.input.messages"):
        if isinstance(message, dict) and message.get("role") == "user":
            text = _message_text(message)
            if text:
                return text
    for event in span.events:  # the older event-based conventions
        if event["name"] == "gen_ai.user.message":
            text = _message_text(_json_attr(event["attributes"].get("content", "")))
            if text:
                return text
    return ""


def _output_text(span: OtelSpan) -> str:
    texts = [_message_text(m) for m in _messages(span, "gen_ai.output.messages")]
    if not any(texts):
        for event in span.events:
            if event["name"] == "gen_ai.choice":
                message = _json_attr(event["attributes"].get("message", ""))
                texts.append(_message_text(message))
    return "\n".join(t for t in texts if t)


def _int_attr(span: OtelSpan, key: str) -> int | None:
    value = span.attributes.get(key)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _chat_tokens(span: OtelSpan) -> int | None:
    inp = _int_attr(span, "gen_ai.usage.input_tokens")
    out = _int_attr(span, "gen_ai.usage.output_tokens")
    if inp is None and out is None:
        return None
    return (inp or 0) + (out or 0)


def _step_from_span(span: OtelSpan) -> dict[str, Any] | None:
    op = span.operation
    attrs = span.attributes
    base_result: dict[str, Any] = {"span_id": span.span_id}
    if span.status_code == STATUS_ERROR:
        base_result["error"] = span.status_message or attrs.get("error.type") or "error"
    if op == "execute_tool":
        tool = str(
            attrs.get("gen_ai.tool.name")
            or span.name.removeprefix("execute_tool ").strip()
        )
        arguments = _json_attr(attrs.get("gen_ai.tool.call.arguments"))
        args_text = (
            json.dumps(arguments, sort_keys=True)
            if isinstance(arguments, (dict, list))
            else str(arguments or "")
        )
        result = {
            **base_result,
            "arguments": arguments,
            "output": _json_attr(attrs.get("gen_ai.tool.call.result")),
        }
        if attrs.get("gen_ai.tool.call.id"):
            result["call_id"] = attrs["gen_ai.tool.call.id"]
        return {
            "type": "tool_call",
            "tool": tool[:200],
            "description": _clip(f"{tool}({args_text})"),
            "result": result,
            "started_at": span.started_at,
            "ended_at": span.ended_at,
        }
    if op in ("chat", "text_completion", "generate_content"):
        model = (
            attrs.get("gen_ai.response.model")
            or attrs.get("gen_ai.request.model")
            or ""
        )
        text = _output_text(span)
        description = f"assistant: {text}" if text else f"{op} {model}".strip()
        result = {
            **base_result,
            "model": model,
            "input_tokens": _int_attr(span, "gen_ai.usage.input_tokens"),
            "output_tokens": _int_attr(span, "gen_ai.usage.output_tokens"),
        }
        if attrs.get("gen_ai.response.finish_reasons"):
            result["finish_reasons"] = attrs["gen_ai.response.finish_reasons"]
        return {
            "type": "message",
            "description": _clip(description),
            "result": result,
            "tokens": _chat_tokens(span),
            "started_at": span.started_at,
            "ended_at": span.ended_at,
        }
    if op == "invoke_agent":  # a sub-agent inside the run
        name = attrs.get("gen_ai.agent.name") or span.name
        return {
            "type": "action",
            "description": _clip(f"invoke agent {name}"),
            "result": base_result,
            "started_at": span.started_at,
            "ended_at": span.ended_at,
        }
    return None


def _task_text(spans: list[OtelSpan], *, root: OtelSpan | None) -> str:
    """The task: an explicit attribute, else the first user message seen."""
    if root is not None:
        explicit = str(root.attributes.get("flywheel.task_description") or "")
        if explicit or _first_user_text(root):
            return explicit or _first_user_text(root)
    for span in sorted(spans, key=lambda s: s.start_ns):
        text = _first_user_text(span)
        if text:
            return text
    return ""


def _run_fields(root: OtelSpan, spans: list[OtelSpan]) -> dict[str, Any]:
    attrs = root.attributes
    task = _task_text(spans, root=root) or root.name
    failed = root.status_code == STATUS_ERROR
    status = str(attrs.get("flywheel.status") or "")
    if status not in (RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.PARTIAL):
        status = RunStatus.FAILURE if failed else RunStatus.SUCCESS
    score = attrs.get("flywheel.success_score")
    try:
        score = min(1.0, max(0.0, float(score)))
    except (TypeError, ValueError):
        score = 1.0 if status == RunStatus.SUCCESS else 0.0
    versions = attrs.get("flywheel.playbook_versions") or []
    if isinstance(versions, str):
        versions = [v.strip() for v in versions.split(",") if v.strip()]
    agent = attrs.get("gen_ai.agent.name") or root.resource.get("service.name") or ""
    tokens = [t for t in (_chat_tokens(s) for s in spans) if t is not None]
    fields = {
        "task_description": _clip(task),
        "task_type": str(attrs.get("flywheel.task_type") or "")[:200],
        "agent": str(agent)[:100],
        "session_id": str(attrs.get("gen_ai.conversation.id") or "")[:200],
        "user_id": str(attrs.get("user.id") or attrs.get("enduser.id") or "")[:200],
        "status": status,
        "success_score": score,
        "error_message": (
            (root.status_message or str(attrs.get("error.type") or "error"))
            if failed
            else ""
        ),
        "duration_ms": max(0, (root.end_ns - root.start_ns) // 1_000_000) or None,
        "tokens_used": sum(tokens) if tokens else None,
        "playbook_versions": [str(v)[:200] for v in versions][:100],
        "started_at": root.started_at,
        "completed_at": root.ended_at,
        "metrics": {
            "otel": {
                "trace_id": root.trace_id,
                "span_id": root.span_id,
                "spans": len(spans),
            }
        },
    }
    if attrs.get("gen_ai.agent.id"):
        fields["metrics"]["otel"]["agent_id"] = str(attrs["gen_ai.agent.id"])
    return fields


def _agent_root(spans: list[OtelSpan]) -> OtelSpan | None:
    agents = [s for s in spans if s.operation == "invoke_agent"]
    ids = {s.span_id for s in agents}
    outer = [s for s in agents if s.parent_span_id not in ids]
    return min(outer, key=lambda s: s.start_ns) if outer else None


def otel_traces_ingest(
    *, namespace: Namespace, agent: str, spans: list[OtelSpan]
) -> OtelIngestResult:
    """Turn decoded OTLP spans into runs (one per trace with GenAI spans)."""
    result = OtelIngestResult(spans_received=len(spans))
    by_trace: dict[str, list[OtelSpan]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    for trace_id, trace_spans in by_trace.items():
        genai = [s for s in trace_spans if s.operation]
        if not genai:
            continue  # not an agent trace: accepted and ignored
        run, created = _trace_ingest(
            namespace=namespace, agent=agent, trace_id=trace_id, spans=genai
        )
        (result.runs_created if created else result.runs_updated).append(str(run.id))
    return result


def _trace_ingest(
    *, namespace: Namespace, agent: str, trace_id: str, spans: list[OtelSpan]
) -> tuple[Trajectory, bool]:
    external_id = EXTERNAL_ID_PREFIX + trace_id
    root = _agent_root(spans)
    step_spans = sorted(
        (s for s in spans if s is not root), key=lambda s: (s.start_ns, s.end_ns)
    )
    steps = [step for step in (_step_from_span(s) for s in step_spans) if step]
    with transaction.atomic():
        existing = (
            Trajectory.objects.select_for_update()
            .filter(namespace=namespace, external_id=external_id)
            .first()
        )
        if existing is None:
            if root is not None:
                data = {
                    "external_id": external_id,
                    **_run_fields(root, spans),
                    "steps": steps,
                }
            else:
                first = min(spans, key=lambda s: s.start_ns)
                data = {
                    "external_id": external_id,
                    "task_description": _clip(_task_text(spans, root=None))
                    or PLACEHOLDER_TASK.format(trace_id=trace_id),
                    "started_at": first.started_at,
                    "steps": steps,
                    "metrics": {"otel": {"trace_id": trace_id}},
                }
            ingested = runs_ingest(namespace=namespace, agent=agent, runs=[data])[0]
            if ingested.created:
                return ingested.run, True
            existing = ingested.run
        seen = {
            str(span_id)
            for span_id in Step.objects.filter(
                trajectory=existing, result__span_id__isnull=False
            ).values_list("result__span_id", flat=True)
        }
        new_steps = [s for s in steps if s["result"]["span_id"] not in seen]
        if existing.status != RunStatus.RUNNING:
            return existing, False  # late or repeated spans of a finished run
        if new_steps:
            run_steps_append(run=existing, steps=new_steps)
        if root is not None:
            _running_run_finish(run=existing, root=root, spans=spans)
        return existing, False


def _running_run_finish(
    *, run: Trajectory, root: OtelSpan, spans: list[OtelSpan]
) -> None:
    fields = _run_fields(root, spans)
    # The identity arrives with the agent span; the description may have come with
    # an earlier export (the first user message), which the span's name must not undo.
    task = _task_text(spans, root=root)
    n = 0
    if task:
        run.task_description, n = redact_text(fields["task_description"])
    elif run.task_description == PLACEHOLDER_TASK.format(trace_id=root.trace_id):
        run.task_description = fields["task_description"]
    for key in ("task_type", "session_id", "user_id"):
        if fields[key]:
            setattr(run, key, fields[key])
    run.agent = fields["agent"] or run.agent
    run.started_at = fields["started_at"] or run.started_at
    if n:
        run.redacted, run.redaction_count = True, run.redaction_count + n
    run.save(
        update_fields=[
            "task_description",
            "task_type",
            "session_id",
            "user_id",
            "agent",
            "started_at",
            "redacted",
            "redaction_count",
            "updated_at",
        ]
    )
    stored_tokens = [
        t for t in run.steps.values_list("tokens", flat=True) if t is not None
    ]
    run_complete(
        run=run,
        data={
            "status": fields["status"],
            "success_score": fields["success_score"],
            "error_message": fields["error_message"],
            "duration_ms": fields["duration_ms"],
            "tokens_used": sum(stored_tokens) if stored_tokens else None,
            "playbook_versions": fields["playbook_versions"] or None,
            "metrics": fields["metrics"],
        },
    )
