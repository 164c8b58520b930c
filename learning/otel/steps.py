"""One span → one step payload, as ``POST /api/v1/runs/{id}/steps/`` takes it.

| span kind (GenAI operation / OpenInference kind) | step |
| --- | --- |
| ``execute_tool`` / ``TOOL`` | ``tool_call``: tool name, arguments, output, call id |
| ``chat`` … / ``LLM`` | ``message``: the output text and tool calls, model, tokens, cost |
| nested ``invoke_agent`` / ``AGENT`` | ``action``: "invoke agent <name>" |
| ``RETRIEVER``, ``RERANKER`` | ``observation``: the query and the documents |
| ``GUARDRAIL`` | ``decision``: its output |
| anything else (``CHAIN``, ``EMBEDDING``, ``PROMPT``, unknown shapes) | ``action``: the span's name, input, output and attributes |

Every step's result carries its ``span_id`` (a retried export never duplicates it)
and, for a failed span, ``error``. Text is cut to the REST API's limits.
"""

import math
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

from learning.limits import MAX_ID, MAX_STEP_DESCRIPTION
from learning.otel import conventions as c
from learning.otel.decode import OtelSpan

# Attributes a generic step does not copy: its input and output are stored parsed,
# and embedding vectors are large and say nothing about what the agent did.
_NOT_COPIED = ("input.value", "output.value", "input.mime_type", "output.mime_type")


def iso(ns: int) -> str | None:
    """An OTLP time (nanoseconds since 1970, 0 = unset) as ISO 8601 text."""
    if not ns:
        return None
    seconds, rest = divmod(ns, 10**9)
    moment = datetime.fromtimestamp(seconds, tz=dt_timezone.utc)
    return moment.replace(microsecond=rest // 1000).isoformat()


def clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def step_payload(span: OtelSpan, kind: str) -> dict[str, Any]:
    base: dict[str, Any] = {"span_id": span.span_id}
    if c.failed(span):
        base["error"] = c.error_text(span)
    builder = _BUILDERS.get(kind, _generic_step)
    step = builder(span, base)
    step["description"] = clip(step["description"], MAX_STEP_DESCRIPTION)
    step["started_at"] = iso(span.start_ns)
    step["ended_at"] = iso(span.end_ns)
    return step


def _tool_step(span: OtelSpan, base: dict[str, Any]) -> dict[str, Any]:
    attrs = span.attributes
    name_keys = ("gen_ai.tool.name", "tool.name", "tool_call.function.name")
    tool = c.text(c.first(attrs, name_keys)) or span.name.removeprefix("execute_tool ")
    tool = tool.strip()
    result = dict(base)
    arg_key = c.first_key(
        attrs, ("gen_ai.tool.call.arguments", "tool_call.function.arguments")
    ) or c.first_key(attrs, ("input.value",))
    arguments = c.json_text(attrs.get(arg_key), arg_key) if arg_key else None
    result["arguments"] = arguments
    out_key = c.first_key(attrs, ("gen_ai.tool.call.result", "output.value"))
    result["output"] = c.json_text(attrs.get(out_key), out_key) if out_key else None
    call_id = c.first(attrs, ("gen_ai.tool.call.id", "tool_call.id"))
    if call_id:
        result["call_id"] = c.text(call_id)
    args_text = c.text(arguments) if arguments is not None else ""
    return {
        "type": "tool_call",
        "tool": clip(tool, MAX_ID),
        "description": f"{tool}({args_text})",
        "result": result,
    }


def _llm_step(span: OtelSpan, base: dict[str, Any]) -> dict[str, Any]:
    attrs = span.attributes
    model = c.model_name(span)
    inp, out, total = c.token_counts(span)
    body = c.output_text(span)
    operation = c.text(attrs.get("gen_ai.operation.name")) or "llm call"
    result = {**base, "model": model, "input_tokens": inp, "output_tokens": out}
    calls = c.tool_calls(span)
    if calls:
        result["tool_calls"] = calls
    finish = c.first(attrs, ("gen_ai.response.finish_reasons", "llm.finish_reason"))
    if finish:
        result["finish_reasons"] = finish if isinstance(finish, list) else [finish]
    cost = c.number(attrs.get("llm.cost.total"))
    if cost is not None and cost >= 0:
        result["cost_usd"] = cost
    return {
        "type": "message",
        "description": f"assistant: {body}" if body else f"{operation} {model}".strip(),
        "result": result,
        "tokens": total,
    }


def _agent_step(span: OtelSpan, base: dict[str, Any]) -> dict[str, Any]:
    name = c.text(c.first(span.attributes, ("gen_ai.agent.name", "agent.name")))
    return {
        "type": "action",
        "description": f"invoke agent {name or span.name}",
        "result": {**base, "output": clip(c.output_text(span), MAX_STEP_DESCRIPTION)},
    }


def _documents(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": c.text(item.get("document.id")),
            "score": c.number(item.get("document.score")),
            "content": c.text(item.get("document.content")),
            "metadata": c.json_text(item.get("document.metadata")),
        }
        for item in items
    ]


def _retriever_step(span: OtelSpan, base: dict[str, Any]) -> dict[str, Any]:
    query = c.value_text(span, "input")
    docs = _documents(c.indexed(span.attributes, "retrieval.documents."))
    return _documents_step(span, base, f"retrieved {len(docs)} documents", query, docs)


def _reranker_step(span: OtelSpan, base: dict[str, Any]) -> dict[str, Any]:
    query = c.text(span.attributes.get("reranker.query"))
    docs = _documents(c.indexed(span.attributes, "reranker.output_documents."))
    return _documents_step(
        span, base, f"reranked to {len(docs)} documents", query, docs
    )


def _documents_step(span, base, what: str, query: str, docs: list) -> dict[str, Any]:
    return {
        "type": "observation",
        "description": f"{span.name}: {what} for: {query}",
        "result": {**base, "query": query, "documents": docs},
    }


def _guardrail_step(span: OtelSpan, base: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "decision",
        "description": f"{span.name}: {c.output_text(span)}".rstrip(": "),
        "result": {**base, **_io(span)},
    }


def _io(span: OtelSpan) -> dict[str, Any]:
    out = {}
    for direction in ("input", "output"):
        key = f"{direction}.value"
        if key in span.attributes:
            out[direction] = c.json_text(span.attributes[key], key)
    return out


def _storable(value: Any) -> Any:
    """Attribute values as JSON can hold them (a NaN double becomes its name)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_storable(v) for v in value]
    if isinstance(value, dict):
        return {k: _storable(v) for k, v in value.items()}
    return value


def _generic_step(span: OtelSpan, base: dict[str, Any]) -> dict[str, Any]:
    """A span of a shape without its own mapping: kept as an action, not dropped."""
    attrs = span.attributes
    kind = c.first(attrs, ("gen_ai.operation.name", "openinference.span.kind"))
    output = c.output_text(span)
    copied = {
        key: _storable(value)
        for key, value in attrs.items()
        if key not in _NOT_COPIED and not key.endswith(".embedding.vector")
    }
    return {
        "type": "action",
        "description": f"{span.name}: {output}" if output else span.name or "span",
        "result": {
            **base,
            "kind": c.text(kind) or "span",
            **_io(span),
            "attributes": copied,
        },
    }


_BUILDERS = {
    c.TOOL: _tool_step,
    c.LLM: _llm_step,
    c.AGENT: _agent_step,
    c.RETRIEVER: _retriever_step,
    c.RERANKER: _reranker_step,
    c.GUARDRAIL: _guardrail_step,
}
