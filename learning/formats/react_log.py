"""ReAct text logs (the Reflexion repository's ``hotpotqa_runs`` output) -> run payloads.

The log holds trials (``BEGIN TRIAL n``), each with blocks of agents grouped under
``BEGIN CORRECT AGENTS`` / ``BEGIN INCORRECT AGENTS`` / ``BEGIN HALTED AGENTS``. An agent
block is ``Question: …`` then numbered ``Thought n:`` / ``Action n: Tool[argument]`` /
``Observation n: …`` lines (an observation may run over several lines) and ends with
``Correct answer: …``.

Mapping: one run per agent block; ``task_description`` = the question (the same
question in every trial, so trials of one question are comparable); thoughts are
``decision`` steps, actions ``tool_call`` steps (``tool`` = ``Search`` / ``Lookup`` /
``Finish``, arguments named as in the ReAct prompt: ``entity``, ``keyword``,
``answer``), observations ``observation`` steps answering the call before them. The
grader's ``Answer is CORRECT|INCORRECT`` is the outcome, not a step: CORRECT ->
``success`` (score 1), INCORRECT and HALTED -> ``failure`` (score 0). ``metrics`` holds
``expected_answer`` (the correct answer), ``final_answer`` (the ``Finish`` argument, if
any), ``halted``, ``trial`` and the step counts.
"""

import hashlib
import re
from collections.abc import Iterator

ARGUMENT_NAMES = {"search": "entity", "lookup": "keyword", "finish": "answer"}
OUTCOMES = {"CORRECT": "success", "INCORRECT": "failure", "HALTED": "failure"}

_TRIAL = re.compile(r"^BEGIN TRIAL (\d+)")
_GROUP = re.compile(r"^-+ BEGIN (CORRECT|INCORRECT|HALTED) AGENTS -+")
_LINE = re.compile(r"^(Thought|Action|Observation) (\d+): ?(.*)$")
_ACTION = re.compile(r"^\s*(\w+)\[(.*)\]\s*$", re.S)
_VERDICT = re.compile(r"^Answer is (CORRECT|INCORRECT)\s*$")


def react_log_blocks(lines: Iterator[str]) -> Iterator[dict]:
    """The agent blocks of a log: {trial, group, question, lines, answer, where}."""
    trial, group, block = 0, "", None
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\n")
        if match := _TRIAL.match(line):
            trial = int(match.group(1))
            continue
        if match := _GROUP.match(line):
            group = match.group(1)
            continue
        if line.startswith("Question:"):
            if block is not None:  # a block cut short: keep what it has
                yield block
            block = {
                "trial": trial,
                "group": group,
                "question": line[len("Question:") :].strip(),
                "lines": [],
                "answer": None,
                "where": f"line {number}",
            }
            continue
        if block is None:
            continue
        if line.startswith("Correct answer:"):
            block["answer"] = line[len("Correct answer:") :].strip()
            yield block
            block = None
            continue
        block["lines"].append(line)
    if block is not None:
        yield block


def _entries(lines: list[str]) -> list[tuple[str, int, str]]:
    """(kind, number, text) with continuation lines joined to the entry before."""
    entries: list[list] = []
    for line in lines:
        match = _LINE.match(line)
        if match:
            entries.append([match.group(1), int(match.group(2)), match.group(3)])
        elif entries and line.strip():
            entries[-1][2] += "\n" + line
    return [(kind, n, text.strip()) for kind, n, text in entries]


def react_block_payload(block: dict, *, task_type: str = "hotpotqa") -> dict:
    """One agent block -> a run payload."""
    if not block.get("question"):
        raise ValueError("an agent block needs a 'Question:' line")
    steps: list[dict] = []
    final_answer = None
    verdict = ""
    counts = {"tool_calls": 0, "observations": 0}
    for kind, number, text in _entries(block["lines"]):
        if kind == "Thought":
            steps.append({"type": "decision", "description": text})
        elif kind == "Action":
            match = _ACTION.match(text)
            tool = match.group(1) if match else text.split("[", 1)[0].strip()
            argument = match.group(2) if match else ""
            name = ARGUMENT_NAMES.get(tool.lower(), "input")
            if tool.lower() == "finish":
                final_answer = argument
            counts["tool_calls"] += 1
            steps.append(
                {
                    "type": "tool_call",
                    "tool": tool[:200] or "unknown_tool",
                    "description": text,
                    "result": {
                        "arguments": {name: argument},
                        "call_id": f"action-{number}",
                    },
                }
            )
        else:
            if match := _VERDICT.match(text):
                verdict = match.group(1)
                continue
            counts["observations"] += 1
            steps.append(
                {
                    "type": "observation",
                    "description": text,
                    "result": {"call_id": f"action-{number}"},
                }
            )
    group = block.get("group") or verdict or "HALTED"
    status = OUTCOMES.get(group, "failure")
    question = block["question"]
    digest = hashlib.sha256(question.encode()).hexdigest()[:12]
    metrics = {
        **counts,
        "trial": block.get("trial", 0),
        "halted": group == "HALTED",
        "expected_answer": block.get("answer") or "",
    }
    if final_answer is not None:
        metrics["final_answer"] = final_answer
    return {
        "external_id": f"react-{task_type}-t{block.get('trial', 0)}-{digest}",
        "task_description": question,
        "task_type": task_type,
        "status": status,
        "success_score": 1.0 if status == "success" else 0.0,
        "metrics": metrics,
        "steps": steps,
    }
