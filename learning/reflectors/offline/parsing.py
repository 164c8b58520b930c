"""A run's steps as calls with their outcomes, messages and thoughts — the one reading
of a trajectory every analysis shares. Knows step shapes, not domains.

Shapes understood:
- a call is a ``tool_call``/``action`` step with a ``tool`` or a call-like description:
  ``name({json})``, ``name(k=v, …)``, ``Name[argument]`` or a shell-style command;
  its arguments come from ``result.arguments`` (the importers' shape) or the text;
- its outcome is the observation that answers it (by ``result.call_id`` when both
  carry one, else the first waiting call of the same tool, else the oldest waiting
  call), or the call's own result (``result.output`` / ``result.error`` — the
  OpenTelemetry importer's shape — or any other non-argument result);
- messages are ``role: text``; ``decision`` steps are thoughts.
"""

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from learning.reflectors.base import RunView, parse_call

from .signals import ErrorSignal, error_signal

_BRACKET_CALL = re.compile(r"^\s*([A-Za-z_][\w.-]*)\[(.*)\]\s*$", re.S)
_PAREN_CALL = re.compile(r"^\s*[A-Za-z_][\w.]*\s*\(.*\)\s*$", re.S)
USER_ROLES = {"user", "human", "customer", "client"}
AGENT_ROLES = {"assistant", "agent", "ai", "bot", "model"}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def norm_value(value: Any) -> str:
    """A value as comparable text: case, runs of spaces and surrounding quotes ignored
    (the indentation of a multi-line value kept: it can be what differs)."""
    if isinstance(value, (dict, list)):
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    else:
        text = str(value)
    if "\n" in text.strip():  # a multi-line value: its indentation is part of it
        text = "\n".join(line.rstrip() for line in text.strip().splitlines())
    else:
        text = " ".join(text.split())
    return text.strip().strip("\"'`").strip().lower()


def _exact(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


@dataclass
class Call:
    step: int
    tool: str
    args: dict
    text: str = ""
    call_id: str = ""
    result: Any = None
    result_step: int | None = None
    error: ErrorSignal | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def result_text(self) -> str:
        return _text(self.result)

    @cached_property
    def record(self) -> dict | None:
        """The answer as a JSON object (a record a tool returned), else None."""
        if self.failed:
            return None
        if isinstance(self.result, dict):
            return self.result
        text = self.result_text.strip()
        if not text.startswith("{"):
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    @cached_property
    def signature(self) -> str:
        """The call with its arguments as sent, only trailing spaces ignored: two calls
        with the same signature are the same call made again (a changed quote, case or
        indentation is a change: it is often what a retry fixed)."""
        parts = [f"{k}={_exact(v)}" for k, v in sorted(self.args.items())]
        return f"{self.tool}({', '.join(parts)})"

    @property
    def steps(self) -> list[int]:
        out = [self.step]
        if self.result_step is not None and self.result_step != self.step:
            out.append(self.result_step)
        return out


@dataclass
class Message:
    step: int
    role: str
    text: str


@dataclass
class Parsed:
    run: RunView
    calls: list[Call] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    thoughts: list[Message] = field(default_factory=list)
    observations: list[tuple[int, str]] = field(default_factory=list)

    @cached_property
    def key(self) -> tuple:
        """What a parse depends on that can change: steps appended, the outcome or
        score revised, feedback added (caches of parsed runs are keyed by it)."""
        run = self.run
        return (run.id, len(run.steps), run.status, run.score, len(run.feedback))

    @cached_property
    def observed_text(self) -> str:
        """Everything the run was told (observations, call results, non-agent
        messages), lower-cased, for "was this value ever seen?" questions."""
        parts = [text for _step, text in self.observations]
        parts += [c.result_text for c in self.calls if c.result is not None]
        parts += [m.text for m in self.messages if m.role not in AGENT_ROLES]
        return "\n".join(parts).lower()

    @cached_property
    def requested_text(self) -> str:
        """What the run was asked: the task and the user's messages, lower-cased."""
        parts = [self.run.task_description or ""]
        parts += [m.text for m in self.messages if m.role in USER_ROLES]
        return "\n".join(parts).lower()

    @property
    def user_messages(self) -> list[Message]:
        return [m for m in self.messages if m.role in USER_ROLES]

    def tools(self) -> set[str]:
        return {c.tool for c in self.calls}

    def calls_of(self, tool: str) -> list[Call]:
        return [c for c in self.calls if c.tool == tool]


def _call_from_step(step) -> Call | None:
    description = step.description or ""
    result = step.result if isinstance(step.result, dict) else None
    tool, args = parse_call(step)
    bracket = _BRACKET_CALL.match(description)
    if not tool and bracket:
        tool = bracket.group(1)
    if not tool:
        words = description.strip().split(None, 1)
        tool = words[0][:200] if words else ""
    if not tool:
        return None
    if result is not None and isinstance(result.get("arguments"), dict):
        args = result["arguments"]
    elif not args and bracket and bracket.group(1) == tool:
        args = {"input": bracket.group(2)}
    elif not args and description.strip() and not _PAREN_CALL.match(description):
        args = {"command": description.strip()}
    call = Call(
        step=step.index,
        tool=tool,
        args=args,
        text=description,
        call_id=str((result or {}).get("call_id") or ""),
    )
    own = _own_result(step.result)
    if own is not None:
        call.result, call.result_step = own, step.index
        call.error = error_signal(own, step.result if result is not None else None)
    return call


def _own_result(result: Any) -> Any:
    """The outcome a call step carries itself (OpenTelemetry spans, plain results)."""
    if result is None:
        return None
    if isinstance(result, dict):
        if result.get("error"):
            return {"error": result["error"], "output": result.get("output")}
        if "output" in result:
            return result["output"]
        rest = {
            k: v
            for k, v in result.items()
            if k not in ("arguments", "call_id", "span_id", "is_error")
        }
        return rest or None
    return result


def _answer(parsed: Parsed, waiting: list[Call], step, text: str) -> None:
    meta = step.result if isinstance(step.result, dict) else {}
    call_id = str(meta.get("call_id") or "")
    call = next((c for c in waiting if call_id and c.call_id == call_id), None)
    if call is None:
        call = next(
            (c for c in waiting if step.tool and c.tool == step.tool),
            waiting[0] if waiting else None,
        )
    parsed.observations.append((step.index, text))
    if call is None:
        return
    waiting.remove(call)
    call.result, call.result_step = text, step.index
    call.error = error_signal(text, meta)


def run_parse(run: RunView) -> Parsed:
    """The run's calls paired with their outcomes, its messages and thoughts."""
    parsed = Parsed(run=run)
    waiting: list[Call] = []
    for step in run.steps:
        if step.type in ("tool_call", "action"):
            call = _call_from_step(step)
            if call is None:
                continue
            parsed.calls.append(call)
            if call.result_step is None:
                waiting.append(call)
        elif step.type == "observation":
            value = (
                step.description if (step.description or "").strip() else step.result
            )
            _answer(parsed, waiting, step, _text(value))
        elif step.type == "decision":
            parsed.thoughts.append(
                Message(step=step.index, role="", text=step.description)
            )
        elif step.type == "message":
            role, sep, text = (step.description or "").partition(":")
            role = role.strip().lower() if sep and len(role) <= 40 else ""
            text = text.strip() if role else (step.description or "")
            if role in ("tool", "function") and waiting:
                _answer(parsed, waiting, step, text)
                continue
            parsed.messages.append(Message(step=step.index, role=role, text=text))
    return parsed
