"""SWE-agent trajectories (``.traj`` files) -> run payloads.

A ``.traj`` file is one JSON object: ``history`` (the chat, OpenAI style: the system
prompt, the task as the first user message, assistant turns with ``thought`` and
``action`` and sometimes ``tool_calls``, observations as user or ``tool`` messages with
``tool_call_ids``), ``trajectory`` (the same turns as ``action`` / ``observation`` /
``thought`` entries) and ``info`` (``exit_status``, ``submission`` — the patch —,
``model_stats``).

Mapping: ``task_description`` = the first user message that is not a demonstration (its
``INSTRUCTIONS`` part cut off); each assistant turn is a ``decision`` step (the thought)
and a ``tool_call`` step per call — with ``tool_calls``, the function name and its JSON
arguments and ``call_id``; otherwise the command's first word as ``tool`` and the whole
command as the ``command`` argument —; each observation is an ``observation`` step
answering its call (``tool_call_ids``), the shell prompt trailer (``(Open file: …)``,
``(Current directory: …)``, ``bash-$``) dropped. Demonstration messages (``is_demo``)
are not steps. ``metrics``: ``exit_status``, ``patch`` (the submission), model stats
and step counts. "submitted" is not "resolved": without a verdict in ``info``
(``resolved`` true/false) the run is ``partial`` unless the caller says otherwise.
"""

import ast
import hashlib
import json
import re
from typing import Any

DESCRIPTION_LIMIT = 20_000
TASK_LIMIT = 100_000
PATCH_LIMIT = 50_000
STATUSES = ("success", "failure", "partial")

# Linear-time (tests/security/test_redos.py): the trailer starts where a run of spaces
# starts and never gives spaces back; a fence starts at its first backtick; the
# INSTRUCTIONS line keeps its indent on its own line.
_TRAILER = re.compile(
    r"(?<!\s)(?:\s*+\(Open file: [^\n]*\)|\s*+\(Current directory: [^\n]*\)"
    r"|\s*+bash-\$\s*+)++\s*+$"
)
_FENCE = re.compile(r"(?<!`)```[^\n]*\n(.*?)```", re.S)
_INSTRUCTIONS = re.compile(r"\n[^\S\n]*INSTRUCTIONS:[^\S\n]*\n", re.S)


def _clip(text: str, limit: int = DESCRIPTION_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f" … [{len(text) - limit} more characters]"


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text") or "") if isinstance(p, dict) else str(p) for p in content
        )
    return json.dumps(content, ensure_ascii=False)


def loose_value(value: Any) -> Any:
    """A value that may be written as text: SWE-agent writes some lists as Python
    reprs ("[{'function': …}]"), other logs as JSON (None when it is neither)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return None
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return None


def _is_demo(message: dict) -> bool:
    flag = message.get("is_demo")
    return flag is True or str(flag).lower() == "true"


# The prompt trailer ends an observation: only its tail is looked at (from every ")"
# of a long chain of trailers the rest was rescanned before failing at a last line).
TRAILER_SCAN = 4000


def _observation(text: str) -> str:
    text = text.replace("\r\n", "\n")
    head, tail = text[:-TRAILER_SCAN], text[-TRAILER_SCAN:]
    return (head + _TRAILER.sub("", tail)).strip()


def _command_tool(action: str) -> str:
    first = action.strip().split(None, 1)
    return first[0][:200] if first else "unknown_tool"


def _call_steps(*, action: str, tool_calls: Any) -> list[dict]:
    calls = loose_value(tool_calls)
    steps = []
    if isinstance(calls, list) and calls:
        for call in calls:
            if not isinstance(call, dict):
                continue
            function = call.get("function") or {}
            name = str(function.get("name") or _command_tool(action))[:200]
            arguments = loose_value(function.get("arguments"))
            if not isinstance(arguments, dict):
                arguments = {"command": action.strip()}
            steps.append(
                {
                    "type": "tool_call",
                    "tool": name,
                    "description": _clip(action.strip() if len(calls) == 1 else name),
                    "result": {"arguments": arguments, "call_id": call.get("id") or ""},
                }
            )
    if not steps and action.strip():
        steps.append(
            {
                "type": "tool_call",
                "tool": _command_tool(action),
                "description": _clip(action.strip()),
                "result": {"arguments": {"command": action.strip()}},
            }
        )
    return steps


def _thought(message: dict) -> str:
    thought = message.get("thought")
    if thought is None:
        thought = _FENCE.sub("", _text(message.get("content")))
    return str(thought or "").strip()


def _history_steps(history: list) -> tuple[str, list[dict]]:
    task, steps = "", []
    for message in history:
        if not isinstance(message, dict) or message.get("role") == "system":
            continue
        if _is_demo(message):
            continue
        role = message.get("role")
        if role == "assistant":
            if thought := _thought(message):
                steps.append({"type": "decision", "description": _clip(thought)})
            action = str(message.get("action") or "")
            if not action:
                fenced = _FENCE.findall(_text(message.get("content")))
                action = fenced[-1] if fenced else ""
            steps += _call_steps(action=action, tool_calls=message.get("tool_calls"))
        elif not task and role == "user":
            task = _text(message.get("content"))
        else:
            ids = loose_value(message.get("tool_call_ids"))
            result = {"call_id": str(ids[0])} if isinstance(ids, list) and ids else {}
            steps.append(
                {
                    "type": "observation",
                    "description": _clip(_observation(_text(message.get("content")))),
                    **({"result": result} if result else {}),
                }
            )
    return task, steps


def _trajectory_steps(trajectory: list) -> list[dict]:
    steps: list[dict] = []
    for entry in trajectory:
        if not isinstance(entry, dict):
            continue
        if thought := str(entry.get("thought") or "").strip():
            steps.append({"type": "decision", "description": _clip(thought)})
        steps += _call_steps(action=str(entry.get("action") or ""), tool_calls=None)
        steps.append(
            {
                "type": "observation",
                "description": _clip(_observation(str(entry.get("observation") or ""))),
            }
        )
    return steps


def _task_text(task: str) -> str:
    task = _INSTRUCTIONS.split(task, maxsplit=1)[0].strip()
    return task[:TASK_LIMIT] or "(SWE-agent run without a task message)"


def swe_agent_payload(
    record: Any, *, name: str = "", task_type: str = "swe-agent", status: str = ""
) -> dict:
    """One ``.traj`` record -> a run payload. ``name`` (the file's path) makes the
    external id; ``status`` overrides the outcome of a run without a verdict."""
    if not isinstance(record, dict):
        raise ValueError("a SWE-agent trajectory must be a JSON object")
    history, trajectory = record.get("history"), record.get("trajectory")
    if not isinstance(history, list) and not isinstance(trajectory, list):
        raise ValueError("missing 'history' and 'trajectory'")
    if status and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    task, steps = _history_steps(history if isinstance(history, list) else [])
    if (
        isinstance(trajectory, list)
        and trajectory
        and not any(s["type"] == "tool_call" for s in steps)
    ):
        steps = _trajectory_steps(trajectory)
    info = record.get("info") if isinstance(record.get("info"), dict) else {}
    verdict = info.get("resolved", record.get("resolved"))
    if isinstance(verdict, bool):
        outcome = "success" if verdict else "failure"
    else:
        outcome = status or "partial"
    metrics: dict[str, Any] = {
        "tool_calls": sum(s["type"] == "tool_call" for s in steps),
        "observations": sum(s["type"] == "observation" for s in steps),
    }
    if info.get("exit_status") is not None:
        metrics["exit_status"] = str(info["exit_status"])[:200]
    if isinstance(info.get("submission"), str) and info["submission"].strip():
        metrics["patch"] = _clip(info["submission"].strip(), PATCH_LIMIT)
    if isinstance(info.get("model_stats"), dict):
        metrics["model_stats"] = {
            k: v
            for k, v in info["model_stats"].items()
            if isinstance(v, (int, float, str))
        }
    if isinstance(verdict, bool):
        metrics["resolved"] = verdict
    stem = re.sub(r"\.traj(\.gz)?$", "", name.rsplit("/", 1)[-1]) or "run"
    digest = hashlib.sha256(
        json.dumps(record, sort_keys=True, default=str).encode()
    ).hexdigest()[:12]
    return {
        "external_id": f"swe-{stem}"[:180] + f"-{digest}",
        "task_description": _task_text(task),
        "task_type": task_type,
        "status": outcome,
        "success_score": {"success": 1.0, "failure": 0.0, "partial": 0.5}[outcome],
        "metrics": metrics,
        "steps": steps,
    }
