"""What a span says under each attribute convention, read with Langfuse's precedence:
Flywheel's own ``flywheel.*`` attributes, then the OpenTelemetry GenAI conventions
(``gen_ai.*``, https://opentelemetry.io/docs/specs/semconv/gen-ai/), then framework
ones (OpenInference: ``openinference.span.kind``, ``input.value``, ``llm.*``,
``tool.*`` …, https://github.com/Arize-ai/openinference/tree/main/spec).
"""

import json
import math
from dataclasses import dataclass, field
from typing import Any

from learning.otel.decode import STATUS_ERROR, OtelSpan
from learning.services.payloads import json_problem

# Span kinds, one vocabulary for both conventions.
AGENT, LLM, TOOL, CHAIN = "agent", "llm", "tool", "chain"
RETRIEVER, RERANKER, EMBEDDING = "retriever", "reranker", "embedding"
GUARDRAIL, EVALUATOR, PROMPT, OTHER = "guardrail", "evaluator", "prompt", "other"
GENAI_OPERATIONS = {
    "invoke_agent": AGENT,
    "chat": LLM,
    "text_completion": LLM,
    "generate_content": LLM,
    "execute_tool": TOOL,
    "embeddings": EMBEDDING,
    "create_agent": OTHER,
}
OPENINFERENCE_KINDS = {
    "AGENT": AGENT,
    "LLM": LLM,
    "TOOL": TOOL,
    "CHAIN": CHAIN,
    "RETRIEVER": RETRIEVER,
    "RERANKER": RERANKER,
    "EMBEDDING": EMBEDDING,
    "GUARDRAIL": GUARDRAIL,
    "EVALUATOR": EVALUATOR,
    "PROMPT": PROMPT,
    "UNKNOWN": OTHER,
}
# Run fields read from attributes, in precedence order (flywheel, gen_ai, framework).
RUN_ATTRIBUTES = {
    "task_type": ("flywheel.task_type",),
    "session_id": ("flywheel.session_id", "gen_ai.conversation.id", "session.id"),
    "user_id": ("flywheel.user_id", "user.id", "enduser.id"),
    "agent": ("flywheel.agent", "gen_ai.agent.name", "agent.name"),
}
# Keys of a JSON input or output that hold its text (OpenInference's input.value).
TEXT_KEYS = (
    "task",
    "input",
    "query",
    "question",
    "prompt",
    "message",
    "content",
    "text",
    "output",
    "answer",
    "result",
)


class MappingError(ValueError):
    """A span's attribute cannot be stored within the limits; names the attribute."""


def span_kind(span: OtelSpan) -> str:
    """The span's kind, or "" for a span no convention marks (an HTTP call, …)."""
    attrs = span.attributes
    op = attrs.get("gen_ai.operation.name")
    if isinstance(op, str) and op:
        return GENAI_OPERATIONS.get(op, OTHER)
    kind = attrs.get("openinference.span.kind")
    if isinstance(kind, str) and kind:
        return OPENINFERENCE_KINDS.get(kind.upper(), OTHER)
    first = span.name.split(" ", 1)[0]
    if first in GENAI_OPERATIONS:
        return GENAI_OPERATIONS[first]
    if any(key.startswith(("flywheel.", "gen_ai.")) for key in attrs):
        return OTHER
    return ""


def first_key(attrs: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    """The first of these attributes that is set (not missing, None or blank)."""
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "" and value != []:
            return key
    return None


def first(attrs: dict[str, Any], keys: tuple[str, ...]) -> Any:
    key = first_key(attrs, keys)
    return None if key is None else attrs[key]


def text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    digits = value.strip() if isinstance(value, str) else ""
    if digits.isascii() and digits.isdigit() and len(digits) < 30:
        return int(digits)
    return None


def number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def json_text(value: Any, key: str | None = None) -> Any:
    """A JSON-string attribute (GenAI messages, tool arguments) parsed when it is JSON
    PostgreSQL can store, else the text itself. With `key`, the value is stored, so
    JSON nested past the REST API's limit is refused, naming the attribute."""
    if not isinstance(value, str) or not value.lstrip().startswith(("{", "[")):
        return value
    try:
        parsed = json.loads(value, parse_constant=_refuse_constant)
    except RecursionError:
        parsed, problem = None, "Nested deeper than the limit."
    except ValueError:
        return value
    else:
        problem = json_problem(parsed)
    if problem is None:
        return parsed
    if key is not None and problem.startswith("Nested deeper"):
        raise MappingError(f'attribute "{key}": JSON {problem[0].lower()}{problem[1:]}')
    return value  # NUL or a lone surrogate inside the JSON: keep the escaped text


def indexed(attrs: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    """OpenInference's flattened lists: ``llm.input_messages.0.message.role`` … as
    ``[{"message.role": …}, …]`` in index order."""
    groups: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        index, _, rest = key[len(prefix) :].partition(".")
        if index.isdigit() and len(index) < 9 and rest:
            groups.setdefault(int(index), {})[rest] = value
    return [groups[i] for i in sorted(groups)]


# --- messages ----------------------------------------------------------------------


@dataclass
class Message:
    role: str
    text: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    def render(self) -> str:
        calls = [
            f"[tool call {c['name']}({text(c['arguments'])})]" for c in self.tool_calls
        ]
        return "\n".join(part for part in [self.text, *calls] if part)


def _genai_message(raw: Any) -> Message | None:
    """``{"role", "parts": [{"type": "text", "content"} | {"type": "tool_call", …}]}``
    (current conventions) or ``{"role", "content"}``."""
    if isinstance(raw, str):
        return Message(role="", text=raw)
    if not isinstance(raw, dict):
        return None
    role = text(raw.get("role"))
    texts, calls = [], []
    if isinstance(raw.get("parts"), list):
        for part in raw["parts"]:
            if not isinstance(part, dict):
                continue
            if part.get("type") in (None, "text"):
                texts.append(text(part.get("content")))
            elif part.get("type") == "tool_call":
                calls.append(
                    {
                        "id": text(part.get("id")),
                        "name": text(part.get("name")),
                        "arguments": json_text(part.get("arguments")),
                    }
                )
    else:
        content = raw.get("content")
        if isinstance(content, list):
            texts = [text(c.get("text")) for c in content if isinstance(c, dict)]
        else:
            texts = [text(content)]
    return Message(role=role, text="\n".join(t for t in texts if t), tool_calls=calls)


def _openinference_message(item: dict[str, Any]) -> Message:
    contents = [
        text(c.get("message_content.text"))
        for c in indexed(item, "message.contents.")
        if c.get("message_content.text")
    ]
    calls = [
        {
            "id": text(c.get("tool_call.id")),
            "name": text(c.get("tool_call.function.name")),
            "arguments": json_text(c.get("tool_call.function.arguments")),
        }
        for c in indexed(item, "message.tool_calls.")
    ]
    body = text(item.get("message.content")) or "\n".join(contents)
    return Message(role=text(item.get("message.role")), text=body, tool_calls=calls)


def _event_messages(span: OtelSpan, names: tuple[str, ...], key: str) -> list[Message]:
    """The older event-based GenAI conventions (``gen_ai.user.message`` …)."""
    out = []
    for event in span.events:
        if event.name in names:
            message = _genai_message(json_text(event.attributes.get(key)))
            if message is not None:
                message.role = message.role or event.name.split(".")[1]
                out.append(message)
    return out


def messages(span: OtelSpan, direction: str) -> list[Message]:
    """The input or output messages of a model call, by precedence: GenAI's
    ``gen_ai.{input,output}.messages``, its older events, OpenInference's
    ``llm.{input,output}_messages.N.message.*``."""
    raw = json_text(span.attributes.get(f"gen_ai.{direction}.messages"))
    if isinstance(raw, list):
        parsed = [m for m in map(_genai_message, raw) if m is not None]
        if parsed:
            return parsed
    if direction == "input":
        events = _event_messages(
            span, ("gen_ai.user.message", "gen_ai.system.message"), "content"
        )
    else:
        events = _event_messages(span, ("gen_ai.choice",), "message")
    if events:
        return events
    items = indexed(span.attributes, f"llm.{direction}_messages.")
    return [_openinference_message(item) for item in items]


def value_text(span: OtelSpan, direction: str) -> str:
    """OpenInference's ``input.value`` / ``output.value`` as text: plain text as it
    is, JSON reduced to the text it carries (a chat request's first user message, a
    response's first choice, an object's ``task``/``input``/``query`` … member)."""
    raw = span.attributes.get(f"{direction}.value")
    value = json_text(raw)
    if isinstance(value, dict):
        found = _json_text_member(value, direction)
        if found:
            return found
    return text(raw)


def _json_text_member(value: dict[str, Any], direction: str) -> str:
    if isinstance(value.get("messages"), list):
        wanted = "user" if direction == "input" else "assistant"
        for message in map(_genai_message, value["messages"]):
            if message is not None and message.role == wanted and message.text:
                return message.text
    choices = value.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = _genai_message(choices[0].get("message"))
        if message is not None and (message.text or message.tool_calls):
            return message.render()
    for key in TEXT_KEYS:
        if isinstance(value.get(key), str) and value[key]:
            return value[key]
    return ""


def first_user_text(span: OtelSpan) -> str:
    for message in messages(span, "input"):
        if message.role == "user" and message.text:
            return message.text
    return ""


def task_text(span: OtelSpan, kind: str) -> str:
    """What the span says the task is: ``flywheel.task_description``, else the first
    user message, else (agents, chains and other containers) its input value."""
    explicit = span.attributes.get("flywheel.task_description")
    if isinstance(explicit, str) and explicit.strip():
        return explicit
    user = first_user_text(span)
    if user:
        return user
    if kind in (AGENT, CHAIN, OTHER, ""):
        return value_text(span, "input")
    return ""


def output_text(span: OtelSpan) -> str:
    rendered = [m.render() for m in messages(span, "output")]
    joined = "\n".join(t for t in rendered if t)
    return joined or value_text(span, "output")


def tool_calls(span: OtelSpan) -> list[dict[str, Any]]:
    return [call for m in messages(span, "output") for call in m.tool_calls]


def token_counts(span: OtelSpan) -> tuple[int | None, int | None, int | None]:
    """(input, output, total) tokens: GenAI's usage, else OpenInference's counts."""
    attrs = span.attributes
    inp = integer(attrs.get("gen_ai.usage.input_tokens"))
    out = integer(attrs.get("gen_ai.usage.output_tokens"))
    if inp is None and out is None:
        inp = integer(attrs.get("llm.token_count.prompt"))
        out = integer(attrs.get("llm.token_count.completion"))
    total = None if inp is None and out is None else (inp or 0) + (out or 0)
    if total is None:
        total = integer(attrs.get("llm.token_count.total"))
    return inp, out, total


def model_name(span: OtelSpan) -> str:
    keys = ("gen_ai.response.model", "gen_ai.request.model", "llm.model_name")
    return text(first(span.attributes, keys))


def error_text(span: OtelSpan) -> str:
    """Why a span failed: its status message, an exception event, ``error.type``."""
    if span.status_message:
        return span.status_message
    for event in span.events:
        if event.name == "exception":
            message = first(event.attributes, ("exception.message", "exception.type"))
            if message:
                return text(message)
    return text(span.attributes.get("error.type")) or "error"


def failed(span: OtelSpan) -> bool:
    return span.status_code == STATUS_ERROR
