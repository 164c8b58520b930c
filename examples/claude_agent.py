"""A small tool-using Claude agent that learns through Flywheel.

Before the task it recalls the playbook's context into its system prompt; while it
works it records every model turn and tool call as steps of a Flywheel run; at the end
it reports the playbook version it used (``playbook_versions: ["airline@3"]``), so the
quality gate can tell whether that version helps.

    pip install anthropic ./client          # the flywheel-client package
    export FLYWHEEL_URL=http://127.0.0.1:8000 FLYWHEEL_TOKEN=fw_…   # an agent token
    export ANTHROPIC_API_KEY=sk-ant-…
    python examples/claude_agent.py --playbook airline \\
        "Change reservation 4WQ150 to flight HAT170"

The tools work on a small in-memory airline (reservations, flights); basic economy
reservations cannot be changed, which is the kind of lesson a playbook learns.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    from flywheel_client import ApiError, Flywheel
except ImportError:  # running from a checkout without installing the client
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "client"))
    from flywheel_client import ApiError, Flywheel

import anthropic

DEFAULT_MODEL = os.environ.get("ANTHROPIC_MODEL", "claude-sonnet-4-6")
BASE_SYSTEM = (
    "You are an airline customer-support agent. Use the tools to look things up and "
    "make changes; never invent reservation data. When the task is done, or cannot be "
    "done, say so in one short final message."
)

TOOLS: list[dict[str, Any]] = [
    {
        "name": "get_reservation_details",
        "description": "Look up a reservation by its id.",
        "input_schema": {
            "type": "object",
            "properties": {"reservation_id": {"type": "string"}},
            "required": ["reservation_id"],
        },
    },
    {
        "name": "search_flights",
        "description": "Flights between two airports.",
        "input_schema": {
            "type": "object",
            "properties": {
                "origin": {"type": "string"},
                "destination": {"type": "string"},
            },
            "required": ["origin", "destination"],
        },
    },
    {
        "name": "change_flight",
        "description": "Move a reservation to another flight.",
        "input_schema": {
            "type": "object",
            "properties": {
                "reservation_id": {"type": "string"},
                "flight_number": {"type": "string"},
            },
            "required": ["reservation_id", "flight_number"],
        },
    },
]


class Airline:
    """The agent's world: a few reservations and flights, changed by the tools."""

    def __init__(self) -> None:
        self.reservations = {
            "4WQ150": {
                "passenger": "Mia Li",
                "cabin": "economy",
                "flight": "HAT041",
                "origin": "JFK",
                "destination": "SFO",
            },
            "8ZK211": {
                "passenger": "Raj Patel",
                "cabin": "basic_economy",
                "flight": "HAT041",
                "origin": "JFK",
                "destination": "SFO",
            },
        }
        self.flights = {
            "HAT041": {"origin": "JFK", "destination": "SFO", "departs": "08:00"},
            "HAT170": {"origin": "JFK", "destination": "SFO", "departs": "17:00"},
        }

    def call(self, name: str, args: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Run a tool; returns (result, is_error)."""
        if name == "get_reservation_details":
            found = self.reservations.get(str(args.get("reservation_id", "")))
            return (found or {"error": "reservation not found"}), found is None
        if name == "search_flights":
            flights = [
                {"flight_number": n, **f}
                for n, f in self.flights.items()
                if f["origin"] == args.get("origin")
                and f["destination"] == args.get("destination")
            ]
            return {"flights": flights}, False
        if name == "change_flight":
            reservation = self.reservations.get(str(args.get("reservation_id", "")))
            if reservation is None:
                return {"error": "reservation not found"}, True
            if reservation["cabin"] == "basic_economy":
                return {"error": "basic economy reservations cannot be changed"}, True
            if args.get("flight_number") not in self.flights:
                return {"error": "no such flight"}, True
            reservation["flight"] = args["flight_number"]
            return {"status": "changed", "reservation": reservation}, False
        return {"error": f"unknown tool {name}"}, True


@dataclass
class AgentResult:
    run_id: str | None
    answer: str
    playbook_versions: list[str]
    turns: int
    tool_errors: list[str] = field(default_factory=list)


def _recalled_lessons(run, playbook: str) -> str:
    """The playbook's lessons for this task, as a system-prompt section ("" if the
    playbook has none yet or does not exist)."""
    try:
        context = run.recall(playbook)
    except ApiError as exc:
        if exc.status != 404:
            raise
        run.observe(f"playbook '{playbook}' not found; working without it")
        return ""
    if not context.context:
        return ""
    return (
        f"\n\nLessons from earlier runs (playbook "
        f"{context.version_ref}):\n{context.context}"
    )


def _call_tools(blocks, airline: "Airline", run, tool_errors: list) -> list[dict]:
    """Run the model's tool calls, record each in the run, and return the results to
    send back (errors are also collected in `tool_errors`)."""
    tool_results = []
    for block in blocks:
        if block.type != "tool_use":
            continue
        result, is_error = airline.call(block.name, dict(block.input))
        run.tool_call(block.name, dict(block.input), result)
        if is_error:
            tool_errors.append(f"{block.name}: {result.get('error')}")
        tool_results.append(
            {
                "type": "tool_result",
                "tool_use_id": block.id,
                "content": json.dumps(result),
                "is_error": is_error,
            }
        )
    return tool_results


def run_agent(
    task: str,
    *,
    flywheel: Flywheel,
    anthropic_client: anthropic.Anthropic,
    playbook: str | None = None,
    task_type: str = "airline.change_flight",
    model: str = DEFAULT_MODEL,
    max_turns: int = 8,
    session_id: str = "",
) -> AgentResult:
    """Recall, act with Claude and the tools, and record the run in Flywheel."""
    airline = Airline()
    answer, turns, tool_errors = "", 0, []
    with flywheel.run(task, task_type=task_type, session_id=session_id) as run:
        system = BASE_SYSTEM + (_recalled_lessons(run, playbook) if playbook else "")
        messages: list[dict[str, Any]] = [{"role": "user", "content": task}]
        run.message("user", task)
        while True:
            if turns >= max_turns:
                raise RuntimeError(f"no final answer after {max_turns} model turns")
            turns += 1
            response = anthropic_client.messages.create(
                model=model,
                max_tokens=1024,
                system=system,
                tools=TOOLS,
                messages=messages,
            )
            usage = response.usage
            tokens = (usage.input_tokens or 0) + (usage.output_tokens or 0)
            run.add_usage(tokens=tokens)
            messages.append(
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": b.text}
                        if b.type == "text"
                        else {
                            "type": "tool_use",
                            "id": b.id,
                            "name": b.name,
                            "input": b.input,
                        }
                        for b in response.content
                        if b.type in ("text", "tool_use")
                    ],
                }
            )
            text = "\n".join(
                b.text for b in response.content if b.type == "text"
            ).strip()
            if text:
                run.message("assistant", text, tokens=tokens)
                answer = text
            tool_results = _call_tools(response.content, airline, run, tool_errors)
            if response.stop_reason != "tool_use" or not tool_results:
                break
            messages.append({"role": "user", "content": tool_results})
        run.metrics.update({"turns": turns, "model": model})
        if tool_errors:
            run.partial(0.5)
        else:
            run.succeed(1.0)
    return AgentResult(
        run_id=run.id,
        answer=answer,
        playbook_versions=list(run.playbook_versions),
        turns=turns,
        tool_errors=tool_errors,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("task")
    parser.add_argument("--playbook", default="airline")
    parser.add_argument("--task-type", default="airline.change_flight")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--flywheel-url", default=os.environ.get("FLYWHEEL_URL"))
    parser.add_argument("--token", default=os.environ.get("FLYWHEEL_TOKEN"))
    parser.add_argument(
        "--anthropic-base-url", default=os.environ.get("ANTHROPIC_BASE_URL")
    )
    args = parser.parse_args(argv)
    if not os.environ.get("ANTHROPIC_API_KEY"):
        parser.error("set ANTHROPIC_API_KEY")
    result = run_agent(
        args.task,
        flywheel=Flywheel(args.flywheel_url, args.token, agent="claude-agent-example"),
        anthropic_client=anthropic.Anthropic(base_url=args.anthropic_base_url or None),
        playbook=args.playbook or None,
        task_type=args.task_type,
        model=args.model,
    )
    print(json.dumps(result.__dict__, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
