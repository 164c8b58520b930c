"""Bulk import of runs from files: tau-bench trajectories, OpenAI chat logs, JSONL runs.

Each format is converted to the documented run payload (DESIGN.md, "Payloads"), checked
by the ingest service's own validation (``payloads.run_clean``, as the API) and stored by ``runs_ingest`` in batches, so an
import and an API post can never disagree. Re-running an import is idempotent: every
record gets a stable ``external_id`` (given, or derived from the record), and a run
already stored in the namespace is counted as ``existing``.

Mappings
--------
tau-bench (``historical_trajectories/*.json``: a JSON array, or JSONL, of records with
``task_id``, ``trial``, ``reward``, ``info.task`` and ``traj``):
  - ``external_id`` = ``tau-{domain}-{task_id}-{trial}``, ``task_type`` = the domain
    (``airline`` unless ``--task-type`` says otherwise), ``user_id`` =
    ``info.task.user_id``, ``task_description`` = ``info.task.instruction``;
  - ``reward`` 1 -> ``success``, 0 (or missing) -> ``failure``, in between ->
    ``partial``; ``success_score`` = the reward;
  - the system prompt (the policy) is not a step; user and assistant text are
    ``message`` steps (``"user: …"``); each assistant tool call is a ``tool_call`` step
    (``tool`` = the function, ``description`` = ``name(key=value, …)``, ``result`` =
    the parsed arguments); each tool result is an ``observation`` step with the same
    ``tool`` and the result text, error text (``"Error: …"``) kept and flagged in
    ``result.is_error``; the ``think`` tool becomes one ``decision`` step holding the
    thought (its empty result is dropped);
  - ``metrics``: turns, tool calls, tool errors, the reward breakdown and the names
    of the ground-truth actions.
openai-chat (JSONL, one ``{"messages": [...], ...}`` per line): the same message
  mapping; optional ``id``/``external_id``, ``task_description`` (else the first user
  message), ``task_type``, ``user_id``, ``session_id``, ``status``, ``success_score``
  (or ``reward``/``score``), ``metrics``/``metadata``; ``error``, ``latency_ms`` /
  ``duration`` (s) and ``usage`` -> ``error_message``, ``duration_ms``,
  ``tokens_used`` (``run_extras``), a message's ``usage`` -> its first step's tokens;
  results found by ``tool_call_id`` or ``tool_call_ids``. With neither status nor score
  the run is stored as ``running`` (counted in the report's ``without_outcome``).
  Without an id, ``external_id`` is ``chat-<hash of the messages>``.
jsonl: one run payload per line, exactly as ``POST /api/v1/runs/`` takes it; a line
  without ``external_id`` gets ``jsonl-<hash of the line>``.
swe-agent: a ``.traj`` file, or a folder searched recursively for ``*.traj`` (and
  ``*.traj.gz``) files, one run each; the mapping is ``learning.formats.swe_agent``'s.
  Without a verdict in the file a run is ``partial``; ``status`` (``--status``) says
  otherwise. ``task_type`` defaults to ``swe-agent``.
react-log: a ReAct text log (the Reflexion repository's HotpotQA runs), one run per
  agent block; the mapping is ``learning.formats.react_log``'s. ``task_type`` defaults
  to ``react``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from learning.formats.react_log import react_block_payload, react_log_blocks
from learning.formats.swe_agent import loose_value, swe_agent_payload
from learning.limits import MAX_ERROR_MESSAGE
from learning.models import Namespace
from learning.services.payloads import PayloadInvalid, run_clean
from learning.services.redaction import redact_text
from learning.services.runs import runs_ingest
from playbooks.policy import agent_policy_set

FORMATS = ("tau-bench", "openai-chat", "jsonl", "swe-agent", "react-log")
DEFAULT_TASK_TYPES = {
    "tau-bench": "airline",
    "swe-agent": "swe-agent",
    "react-log": "react",
}
DESCRIPTION_LIMIT = 20_000  # characters of one message or tool result kept in a step
TASK_LIMIT = 100_000


class ImportFileError(Exception):
    """The file as a whole cannot be read (missing, not JSON at all, wrong shape)."""


@dataclass
class Rejected:
    where: str  # "record 3" / "line 12"
    reason: str


@dataclass
class ImportReport:
    read: int = 0
    created: int = 0
    existing: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    # Stored without an outcome (no status, no score): `running`, so never reflected
    # until something completes them.
    without_outcome: int = 0
    policy_chars: int = 0  # the agent policy taken from the system message, if asked

    @property
    def done(self) -> int:
        return self.created + self.existing + len(self.rejected)


# --- reading ----------------------------------------------------------------------


def _open_text(path: Path) -> io.TextIOBase:
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(
            gzip.open(path, "rb"), encoding="utf-8", errors="replace"
        )
    # Undecodable bytes become U+FFFD: the record is then rejected, not the file.
    return open(path, encoding="utf-8", errors="replace")


def _first_char(path: Path) -> str:
    with _open_text(path) as handle:
        while True:
            chunk = handle.read(4096)
            if not chunk:
                return ""
            stripped = chunk.lstrip("\ufeff \t\r\n")
            if stripped:
                return stripped[0]


def _load_array(path: Path) -> list:
    try:
        with _open_text(path) as handle:
            data = json.load(handle)
    except (ValueError, RecursionError) as exc:
        raise ImportFileError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, list):
        raise ImportFileError(f"{path}: expected a JSON array of records")
    return data


def _whole_object(path: Path) -> dict | None:
    """The file as one JSON object when it is one (pretty-printed, spanning lines)
    rather than JSONL (one object per line); None for JSONL."""
    with _open_text(path) as handle:
        first_line = next((line for line in handle if line.strip()), "")
    try:
        json.loads(first_line)
        return None  # the first line is a whole record: JSONL
    except (ValueError, RecursionError):
        pass
    try:
        with _open_text(path) as handle:
            data = json.load(handle)
    except (ValueError, RecursionError):
        return None  # neither: each line is reported as it is read
    return data if isinstance(data, dict) else None


def format_guess(record: Any) -> str | None:
    """Which import format a record looks like (by the keys each format needs), or
    None: to tell a user who picked the wrong --format which one to pick."""
    if not isinstance(record, dict):
        return None
    if "traj" in record and ("reward" in record or "task_id" in record):
        return "tau-bench"
    if "history" in record or "trajectory" in record:
        return "swe-agent"
    if isinstance(record.get("messages"), list):
        return "openai-chat"
    if "task_description" in record:
        return "jsonl"
    return None


def _jsonl_records(path: Path) -> Iterator[tuple[str, Any, str | None]]:
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield f"line {number}", json.loads(line), None
            except (ValueError, RecursionError) as exc:
                yield f"line {number}", None, f"invalid JSON: {exc}"


def _traj_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and p.name.endswith((".traj", ".traj.gz"))
    )


def _traj_records(
    path: Path, files: list[Path]
) -> Iterator[tuple[str, Any, str | None]]:
    for file in files:
        where = str(file.relative_to(path)) if file != path else file.name
        try:
            with _open_text(file) as handle:
                yield where, json.load(handle), None
        except (ValueError, RecursionError) as exc:
            yield where, None, f"invalid JSON: {exc}"
        except (OSError, EOFError) as exc:
            yield where, None, f"cannot read: {exc}"


def _react_records(path: Path) -> Iterator[tuple[str, Any, str | None]]:
    with _open_text(path) as handle:
        for block in react_log_blocks(handle):
            yield block["where"], block, None


def format_records_open(
    path: Path, *, fmt: str, limit: int | None = None
) -> tuple[int, Iterator[tuple[str, Any, str | None]]]:
    """(how many records, an iterator of (where, record, error)) for a format — a
    folder of ``.traj`` files, a ReAct log, or a JSON / JSONL file —, at most
    `limit` of them."""
    total, records = _format_records(path, fmt=fmt)
    if limit is None:
        return total, records
    return min(total, limit), itertools.islice(records, max(limit, 0))


def _format_records(
    path: Path, *, fmt: str
) -> tuple[int, Iterator[tuple[str, Any, str | None]]]:
    if fmt == "swe-agent":
        if not path.exists():
            raise ImportFileError(f"no such file or folder: {path}")
        files = _traj_files(path)
        if not files:
            raise ImportFileError(f"no .traj files in {path}")
        return len(files), _traj_records(path, files)
    if not path.is_file():
        raise ImportFileError(f"no such file: {path}")
    if fmt == "react-log":
        try:
            with _open_text(path) as handle:
                total = sum(1 for line in handle if line.startswith("Question:"))
        except (OSError, EOFError) as exc:
            raise ImportFileError(f"cannot read {path}: {exc}") from exc
        if not total:
            raise ImportFileError(f"{path}: no 'Question:' blocks (not a ReAct log)")
        return total, _react_records(path)
    return records_open(path)


def records_open(path: Path) -> tuple[int, Iterator[tuple[str, Any, str | None]]]:
    """How many records the file holds (for the progress bar) and an iterator of
    (where, record, error) over them: a JSON array, or JSONL read line by line."""
    try:
        first = _first_char(path)
    except (OSError, EOFError) as exc:
        raise ImportFileError(f"cannot read {path}: {exc}") from exc
    if first == "[":
        records = _load_array(path)
        return len(records), (
            (f"record {number}", record, None)
            for number, record in enumerate(records, start=1)
        )
    if first == "{":
        document = _whole_object(path)
        if document is not None:  # one JSON object over several lines: one record
            return 1, iter([("the file (one JSON document)", document, None)])
    try:
        with _open_text(path) as handle:
            total = sum(1 for line in handle if line.strip())
    except (OSError, EOFError) as exc:
        raise ImportFileError(f"cannot read {path}: {exc}") from exc
    return total, _jsonl_records(path)


# --- converting -------------------------------------------------------------------


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _text(content: Any) -> str:
    """Message content as text: a string, or OpenAI's list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                parts.append(str(part.get("text") or part.get("content") or ""))
            else:
                parts.append(str(part))
        return "\n".join(p for p in parts if p)
    return json.dumps(content, ensure_ascii=False)


def _clip(text: str, limit: int = DESCRIPTION_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f" … [{len(text) - limit} more characters]"


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw) if raw.strip() else {}
        except ValueError:
            return raw
    return raw if raw is not None else {}


def _call_text(name: str, arguments: Any) -> str:
    if isinstance(arguments, dict):
        inner = ", ".join(
            f"{key}={value if isinstance(value, str) else json.dumps(value)}"
            for key, value in arguments.items()
        )
        return f"{name}({inner})"
    return f"{name}({arguments})"


def _call_steps(
    calls: list, counts: dict, names_by_call: dict, think_ids: set
) -> list[dict]:
    """One assistant turn's tool calls -> steps (the ``think`` tool: a decision)."""
    steps = []
    for call in calls:
        function = call.get("function") or {}
        name = str(function.get("name") or "unknown_tool")[:200]
        arguments = _arguments(function.get("arguments"))
        call_id = call.get("id") or ""
        counts["tool_calls"] += 1
        if call_id:
            names_by_call[call_id] = name
        if name == "think" and isinstance(arguments, dict):
            if call_id:
                think_ids.add(call_id)
            steps.append(
                {
                    "type": "decision",
                    "tool": "think",
                    "description": _clip(str(arguments.get("thought", ""))),
                }
            )
            continue
        steps.append(
            {
                "type": "tool_call",
                "tool": name,
                "description": _clip(_call_text(name, arguments)),
                "result": {"arguments": arguments, "call_id": call_id},
            }
        )
    return steps


def messages_to_steps(messages: list) -> tuple[list[dict], dict[str, int]]:
    """OpenAI-style chat messages -> run steps, plus counts for the run's metrics."""
    steps: list[dict] = []
    counts = {"turns": 0, "tool_calls": 0, "tool_errors": 0}
    think_ids: set[str] = set()
    names_by_call: dict[str, str] = {}
    first_of_turn = 0
    for message in messages:
        if not isinstance(message, dict):
            raise ValueError("each message must be a JSON object")
        role = message.get("role")
        if role == "system":
            continue
        counts["turns"] += 1
        content = _text(message.get("content"))
        calls = _calls_list(message.get("tool_calls"))
        if message.get("function_call"):  # the legacy single-call shape
            calls.append({"function": message["function_call"]})
        if role == "assistant" and calls:
            if content.strip():
                steps.append(
                    {"type": "message", "description": _clip(f"assistant: {content}")}
                )
            steps += _call_steps(calls, counts, names_by_call, think_ids)
        elif role in ("tool", "function"):
            call_id = _call_id(message)
            name = str(message.get("name") or names_by_call.get(call_id, ""))[:200]
            if call_id in think_ids and not content.strip():
                continue
            is_error = _is_error_result(message, content)
            counts["tool_errors"] += is_error
            steps.append(
                {
                    "type": "observation",
                    "tool": name,
                    "description": _clip(content),
                    "result": {"call_id": call_id, "is_error": is_error},
                }
            )
        else:
            steps.append(
                {"type": "message", "description": _clip(f"{role}: {content}")}
            )
        _turn_tokens(message, steps, first=first_of_turn)
        first_of_turn = len(steps)
    return steps, counts


def _calls_list(raw: Any) -> list:
    """An assistant message's tool calls: a list, or that list serialised as a string
    (JSON, or Python's repr as SWE-agent writes it)."""
    raw = _loose_bounded(raw)
    return [c for c in raw if isinstance(c, dict)] if isinstance(raw, list) else []


def _loose_bounded(raw: Any) -> Any:
    """`loose_value`, with text longer than a step keeps left unparsed."""
    if isinstance(raw, str) and len(raw) > DESCRIPTION_LIMIT:
        return None
    return loose_value(raw)


def _call_id(message: dict) -> str:
    """The call a tool message answers: ``tool_call_id``, or the first of
    ``tool_call_ids`` (a list, or a list written as text)."""
    if message.get("tool_call_id"):
        return str(message["tool_call_id"])[:200]
    ids = message.get("tool_call_ids")
    if isinstance(ids, str):
        ids = _loose_bounded(ids) if ids.strip().startswith("[") else [ids]
    if isinstance(ids, list) and ids:
        return str(ids[0])[:200]
    return ""


def _is_error_result(message: dict, content: str) -> bool:
    """A tool result that reports a failure: flagged by the message (``is_error``,
    ``status: error``, an ``error`` field) or worded as one."""
    if message.get("is_error") is True or message.get("error"):
        return True
    if str(message.get("status") or "").lower() in ("error", "failed", "failure"):
        return True
    head = content.lstrip().lower()
    return head.startswith(("error", "exception", "traceback (most recent call last)"))


def _turn_tokens(message: dict, steps: list[dict], *, first: int) -> None:
    """A message's token usage (``usage.total_tokens``, or prompt + completion, or
    ``tokens``) on the first step it produced."""
    tokens = _usage_tokens(message.get("usage"))
    if tokens is None and isinstance(message.get("tokens"), int):
        tokens = message["tokens"]
    if tokens is not None and first < len(steps) and tokens >= 0:
        steps[first]["tokens"] = tokens


def _usage_tokens(usage: Any) -> int | None:
    if not isinstance(usage, dict):
        return None
    total = usage.get("total_tokens")
    if isinstance(total, int):
        return total
    parts = [
        usage.get(k)
        for k in ("prompt_tokens", "completion_tokens", "input_tokens", "output_tokens")
    ]
    numbers = [p for p in parts if isinstance(p, int)]
    return sum(numbers) if numbers else None


def tau_bench_payload(record: Any, *, domain: str = "airline") -> dict:
    """One tau-bench trajectory record -> a run payload."""
    if not isinstance(record, dict):
        raise ValueError("a tau-bench record must be a JSON object")
    for key in ("task_id", "traj"):
        if key not in record:
            raise ValueError(f"missing '{key}'")
    if not isinstance(record["traj"], list):
        raise ValueError("'traj' must be a list of messages")
    info = record.get("info") or {}
    task = info.get("task") or {}
    reward = record.get("reward")
    score = float(reward) if isinstance(reward, (int, float)) else 0.0
    if score >= 1:
        status = "success"
    elif score > 0:
        status = "partial"
    else:
        status = "failure"
    steps, counts = messages_to_steps(record["traj"])
    reward_info = info.get("reward_info") or {}
    metrics: dict[str, Any] = {**counts, "reward": reward}
    if isinstance(reward_info.get("info"), dict):
        metrics["reward_breakdown"] = {
            key: value
            for key, value in reward_info["info"].items()
            if isinstance(value, (int, float))
        }
    if info.get("user_cost") is not None:
        metrics["user_cost_usd"] = info["user_cost"]
    expected = [a.get("name") for a in task.get("actions") or [] if isinstance(a, dict)]
    if expected:
        metrics["expected_actions"] = expected
    instruction = str(
        task.get("instruction") or f"tau-bench {domain} task {record['task_id']}"
    )
    return {
        "external_id": f"tau-{domain}-{record['task_id']}-{record.get('trial', 0)}",
        "task_description": instruction[:TASK_LIMIT],
        "task_type": domain,
        "user_id": str(task.get("user_id") or "")[:200],
        "status": status,
        "success_score": score,
        "metrics": metrics,
        "steps": steps,
    }


def openai_chat_payload(record: Any) -> dict:
    """One ``{"messages": [...], ...}`` record -> a run payload."""
    if not isinstance(record, dict):
        raise ValueError("an openai-chat record must be a JSON object")
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list")
    steps, counts = messages_to_steps(messages)
    task = record.get("task_description")
    if not task:
        first_user = next(
            (m for m in messages if isinstance(m, dict) and m.get("role") == "user"),
            None,
        )
        task = _text(first_user.get("content")) if first_user else ""
    external_id = record.get("external_id") or record.get("id")
    payload: dict[str, Any] = {
        "external_id": str(external_id) if external_id else f"chat-{_digest(messages)}",
        "task_description": (task or "(conversation without a user message)")[
            :TASK_LIMIT
        ],
        "steps": steps,
        "metrics": {
            **counts,
            **(record.get("metrics") or record.get("metadata") or {}),
        },
    }
    for key in ("task_type", "user_id", "session_id", "agent", "status"):
        if record.get(key) is not None:
            payload[key] = record[key]
    payload.update(run_extras(record))
    score = next(
        (
            record[k]
            for k in ("success_score", "reward", "score")
            if record.get(k) is not None
        ),
        None,
    )
    if score is not None:
        payload["success_score"] = score
        if "status" not in payload and isinstance(score, (int, float)):
            payload["status"] = (
                "success" if score >= 1 else "partial" if score > 0 else "failure"
            )
    return payload


def run_extras(record: dict) -> dict:
    """A record's error text, duration and token count under the names logs use
    (``error`` as text or ``{"message": …}``, ``latency_ms``, ``duration`` in seconds,
    ``usage``), as the run payload's ``error_message``, ``duration_ms`` and
    ``tokens_used``; a field the record already gives by its payload name wins."""
    extras: dict[str, Any] = {}
    error = record.get("error_message") or record.get("error")
    if isinstance(error, dict):
        error = error.get("message") or json.dumps(error, ensure_ascii=False)
    if error:
        extras["error_message"] = str(error)[:MAX_ERROR_MESSAGE]
    duration = record.get("duration_ms", record.get("latency_ms"))
    if duration is None and isinstance(record.get("duration"), (int, float)):
        duration = record["duration"] * 1000  # seconds
    if isinstance(duration, (int, float)) and not isinstance(duration, bool):
        extras["duration_ms"] = max(0, round(duration))
    tokens = record.get("tokens_used")
    if tokens is None:
        tokens = _usage_tokens(record.get("usage"))
    if isinstance(tokens, int) and not isinstance(tokens, bool):
        extras["tokens_used"] = tokens
    return extras


def jsonl_payload(record: Any) -> dict:
    if not isinstance(record, dict):
        raise ValueError("each line must be a JSON object (one run)")
    if record.get("external_id") in (None, ""):
        record = {**record, "external_id": f"jsonl-{_digest(record)}"}
    extras = {k: v for k, v in run_extras(record).items() if k not in record}
    return {**record, **extras}


def payload_convert(
    record: Any,
    *,
    fmt: str,
    domain: str | None = None,
    name: str = "",
    status: str = "",
) -> dict:
    """One record of `fmt` -> a run payload. `domain` is the task type (each format
    has a default), `name` the record's file (swe-agent), `status` the outcome of
    runs whose record holds no verdict (swe-agent)."""
    task_type = domain or DEFAULT_TASK_TYPES.get(fmt, "")
    if fmt == "tau-bench":
        return tau_bench_payload(record, domain=task_type)
    if fmt == "openai-chat":
        return openai_chat_payload(record)
    if fmt == "jsonl":
        return jsonl_payload(record)
    if fmt == "swe-agent":
        return swe_agent_payload(record, name=name, task_type=task_type, status=status)
    if fmt == "react-log":
        return react_block_payload(record, task_type=task_type)
    raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def _flatten_errors(errors: Any, prefix: str = "") -> list[str]:
    """DRF's nested errors -> ["steps.3.type: …", …]."""
    if isinstance(errors, dict):
        out = []
        for key, value in errors.items():
            if key == "non_field_errors":
                name = prefix
            else:
                name = f"{prefix}.{key}" if prefix else str(key)
            out += _flatten_errors(value, name)
        return out
    if isinstance(errors, list):
        out = []
        for item in errors:
            if isinstance(item, (dict, list)):
                out += _flatten_errors(item, prefix)
            else:
                out.append(f"{prefix}: {item}" if prefix else str(item))
        return out
    return [f"{prefix}: {errors}" if prefix else str(errors)]


# --- importing --------------------------------------------------------------------


def runs_import(
    *,
    path: str | Path,
    fmt: str,
    namespace: Namespace,
    agent: str,
    batch_size: int = 50,
    limit: int | None = None,
    domain: str | None = None,
    status: str = "",
    progress: Callable[[ImportReport, int], None] | None = None,
    policy_from_system: bool = False,
    actor: str = "",
) -> ImportReport:
    """Import every record of the file (or, for swe-agent, the folder) into
    ``namespace``; runs without an ``agent`` get ``agent``. Each batch is one
    transaction; a rejected record never stops the others. ``progress(report,
    total)`` is called after each batch. With ``policy_from_system`` (the user's
    choice: a system prompt may hold what they do not want stored) the first system
    message becomes the namespace's agent policy, which candidates are checked
    against."""
    path = Path(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    total, records = format_records_open(path, fmt=fmt, limit=limit)
    report = ImportReport()
    batch: list[dict] = []
    system_policy = _SystemPolicy(
        enabled=policy_from_system,
        namespace=namespace,
        actor=actor or f"import:{agent}",
        source=f"import:{path.name}",
    )

    def flush():
        if batch:
            results = runs_ingest(namespace=namespace, agent=agent, runs=batch)
            report.created += sum(r.created for r in results)
            report.existing += sum(not r.created for r in results)
            report.without_outcome += sum(_without_outcome(p) for p in batch)
            batch.clear()
        if progress:
            progress(report, total)

    try:
        for where, record, error in records:
            report.read += 1
            if error is None:
                system_policy.see(record)
                error, payload = _record_check(
                    record, fmt=fmt, domain=domain, name=where, status=status
                )
            if error is not None:
                report.rejected.append(Rejected(where=where, reason=error))
                continue
            batch.append(payload)
            if len(batch) >= batch_size:
                flush()
    except (OSError, EOFError) as exc:  # a truncated or corrupt .gz, a vanished file
        flush()
        raise ImportFileError(
            f"reading {path} failed after {report.read} records ({exc}); the runs before "
            "it are stored, and a re-run skips them"
        ) from exc
    flush()
    report.policy_chars = system_policy.chars
    return report


def _without_outcome(payload: dict) -> bool:
    return payload.get("status") in (None, "", "running")


class _SystemPolicy:
    """Takes the first system message of the imported records (redacted) as the
    namespace's agent policy, before the first batch is stored, so the audits of the
    candidates those runs give already check against it. Only when the user asked."""

    def __init__(self, *, enabled: bool, namespace, actor: str, source: str):
        self.enabled, self.namespace = enabled, namespace
        self.actor, self.source = actor, source
        self.chars = 0

    def see(self, record) -> None:
        if not self.enabled or self.chars:
            return
        text = redact_text(record_system_text(record))[0]
        if text:
            agent_policy_set(
                namespace=self.namespace,
                text=text,
                actor=self.actor,
                source=self.source,
            )
            self.chars = len(text)


def record_system_text(record: Any) -> str:
    """The system message of a record (tau-bench `traj`, OpenAI chat `messages`,
    SWE-agent `history`), or ""."""
    if not isinstance(record, dict):
        return ""
    for key in ("traj", "messages", "history"):
        messages = record.get(key)
        if isinstance(messages, list):
            for message in messages:
                if isinstance(message, dict) and message.get("role") == "system":
                    return _text(message.get("content")).strip()
            return ""
    return ""


def _record_check(
    record: Any, *, fmt: str, domain: str | None, name: str = "", status: str = ""
) -> tuple[str | None, dict | None]:
    """(reason, None) for a record that cannot be stored, else (None, validated run)."""
    try:
        payload = payload_convert(
            record, fmt=fmt, domain=domain, name=name, status=status
        )
    except (ValueError, TypeError, AttributeError) as exc:
        guess = format_guess(record)
        hint = f" (it looks like --format {guess})" if guess and guess != fmt else ""
        return f"cannot convert: {exc}{hint}", None
    try:
        return None, run_clean(payload)
    except PayloadInvalid as exc:
        return "; ".join(_flatten_errors(exc.errors)), None
