"""The Claude agent example end to end: a fake Messages API server, a live Flywheel."""

import importlib.util
import json
import os
import sys
from pathlib import Path

import anthropic
import pytest
from flywheel_client import Flywheel

from learning.models import Trajectory
from tests.ecosystem.fakes import Recorder
from tests.factories import make_token

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "claude_agent.py"
spec = importlib.util.spec_from_file_location("claude_agent_example", EXAMPLE)
claude_agent = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = claude_agent  # dataclasses look their module up
spec.loader.exec_module(claude_agent)


def _message(content, stop_reason, n):
    return (
        200,
        {},
        {
            "id": f"msg_{n}",
            "type": "message",
            "role": "assistant",
            "model": "claude-test",
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": 100 * n, "output_tokens": 10},
        },
    )


SCRIPT = [
    _message(
        [
            {"type": "text", "text": "Let me check the reservation."},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "get_reservation_details",
                "input": {"reservation_id": "4WQ150"},
            },
        ],
        "tool_use",
        1,
    ),
    _message(
        [
            {
                "type": "tool_use",
                "id": "toolu_2",
                "name": "change_flight",
                "input": {"reservation_id": "4WQ150", "flight_number": "HAT170"},
            }
        ],
        "tool_use",
        2,
    ),
    _message(
        [{"type": "text", "text": "Done: 4WQ150 is now on HAT170."}], "end_turn", 3
    ),
]


@pytest.fixture
def flywheel(live_server):
    _admin, admin_raw = make_token(namespace="acme", role="admin", name="pb-admin")
    admin = Flywheel(live_server.url, admin_raw)
    admin.request(
        "POST",
        "playbooks/",
        json_body={
            "slug": "airline",
            "name": "Airline support",
            "scope": "team",
            "mode": "propose",
        },
    )
    admin.request(
        "POST",
        "playbooks/airline/strategies/",
        json_body={
            "type": "helpful",
            "description": "Check the cabin class before changing a flight",
            "context": "flight changes",
        },
    )
    _agent, raw = make_token(namespace="acme", role="agent", name="claude-agent")
    return Flywheel(live_server.url, raw, agent="claude-agent-example")


def test_agent_recalls_acts_and_records_its_run(flywheel):
    """The agent puts the recalled playbook into its system prompt, runs the tools
    Claude asks for, and records the run with its steps, usage and playbook version."""
    with Recorder(SCRIPT) as fake:
        client = anthropic.Anthropic(
            api_key="sk-ant-test", base_url=fake.url, max_retries=0
        )
        result = claude_agent.run_agent(
            "Change reservation 4WQ150 to flight HAT170",
            flywheel=flywheel,
            anthropic_client=client,
            playbook="airline",
        )
    assert result.answer == "Done: 4WQ150 is now on HAT170."
    assert result.turns == 3 and result.tool_errors == []
    assert result.playbook_versions == ["airline@2"]

    requests = [json.loads(r["body"]) for r in fake.requests]
    assert all(r["path"] == "/v1/messages" for r in fake.requests)
    assert "Check the cabin class before changing a flight" in requests[0]["system"]
    assert "airline@2" in requests[0]["system"]
    assert {t["name"] for t in requests[0]["tools"]} == {
        "get_reservation_details",
        "search_flights",
        "change_flight",
    }
    tool_result = requests[1]["messages"][-1]["content"][0]
    assert tool_result["tool_use_id"] == "toolu_1"
    assert json.loads(tool_result["content"])["cabin"] == "economy"

    run = Trajectory.objects.get(pk=result.run_id)
    assert run.status == "success" and run.success_score == 1.0
    assert run.playbook_versions == ["airline@2"]
    assert run.agent == "claude-agent-example"
    assert run.tokens_used == (110 + 210 + 310)
    assert run.metrics["turns"] == 3
    steps = list(run.steps.order_by("index"))
    assert [(s.type, s.tool) for s in steps] == [
        ("message", ""),
        ("message", ""),
        ("tool_call", "get_reservation_details"),
        ("tool_call", "change_flight"),
        ("message", ""),
    ]
    assert steps[3].result["output"]["status"] == "changed"


def test_cli_records_a_partial_run_when_a_tool_refuses(flywheel, monkeypatch, capsys):
    """`python examples/claude_agent.py` wires the env; a refused change (basic
    economy) makes the run partial, and the summary names the version used."""
    script = [
        _message(
            [
                {
                    "type": "tool_use",
                    "id": "toolu_9",
                    "name": "change_flight",
                    "input": {"reservation_id": "8ZK211", "flight_number": "HAT170"},
                }
            ],
            "tool_use",
            1,
        ),
        _message(
            [{"type": "text", "text": "Basic economy can't be changed."}], "end_turn", 2
        ),
    ]
    with Recorder(script) as fake:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
        code = claude_agent.main(
            [
                "Move 8ZK211 to HAT170",
                "--playbook",
                "airline",
                "--flywheel-url",
                flywheel.base_url,
                "--token",
                flywheel._token,
                "--anthropic-base-url",
                fake.url,
            ]
        )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["playbook_versions"] == ["airline@2"]
    assert summary["tool_errors"] == [
        "change_flight: basic economy reservations cannot be changed"
    ]
    run = Trajectory.objects.get(pk=summary["run_id"])
    assert run.status == "partial" and run.success_score == 0.5


@pytest.mark.skipif(
    not os.environ.get("ANTHROPIC_API_KEY"),
    reason="needs ANTHROPIC_API_KEY (runs against the real API)",
)
def test_agent_against_the_real_messages_api(flywheel):
    """With a real key, the same agent completes a run against Claude."""
    result = claude_agent.run_agent(
        "Change reservation 4WQ150 to flight HAT170",
        flywheel=flywheel,
        anthropic_client=anthropic.Anthropic(),
        playbook="airline",
    )
    run = Trajectory.objects.get(pk=result.run_id)
    assert run.playbook_versions == ["airline@2"]
    assert run.steps.filter(type="tool_call").exists()
