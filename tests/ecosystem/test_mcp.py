"""The MCP server through the `mcp` SDK's own client: over stdio (`manage.py mcp` as a
subprocess on the test database) and over streamable HTTP against a live server. The
tools are thin callers of the REST API's services, with its validation, limits,
redaction, tokens and namespaces."""

import asyncio
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import pytest
from django.utils import timezone
from mcp import Client, ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from learning.models import ApiToken, Feedback, LearningCandidate, Step, Trajectory
from playbooks.models import RecallLog
from tests.factories import make_playbook, make_strategy, make_token
from tests.reliability.procs import child_env

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-ant-api03-" + "x" * 24


def run_async(fn, *args):
    """`asyncio.run(fn(*args))` on a thread of its own: the e2e tests' Playwright keeps
    an event loop running on the main thread for the whole session."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(fn(*args))).result()


def _texts(result) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


def _seed():
    token, raw = make_token(namespace="acme", role="agent", name="mcp-agent")
    playbook = make_playbook(namespace=token.namespace, slug="refunds", mode="agentic")
    make_strategy(playbook, "Verify the order id with lookup_order before refunding.")
    return token, raw


async def _session_calls(session) -> dict:
    """The same conversation over any transport: list, recall, record, bad input,
    start/add/finish, feedback, a proposal."""
    out: dict = {}
    names = [t.name for t in (await session.list_tools()).tools]
    out["tools"] = names
    recall = next(n for n in names if "recall" in n or "context" in n or "lesson" in n)
    out["recall"] = await session.call_tool(
        recall, {"playbook": "refunds", "task": "refund an order", "session_id": "s-9"}
    )
    out["record"] = await session.call_tool(
        "record_run",
        {
            "task_description": "Refund order W1",
            "external_id": "mcp-run-1",
            "task_type": "retail.refund",
            "status": "failure",
            "success_score": 0.0,
            "error_message": "refunded the wrong card",
            "steps": [
                {"type": "message", "description": "user: refund W1"},
                {
                    "type": "tool_call",
                    "tool": "refund",
                    "description": f"refund(order=W1, key={SECRET})",
                },
            ],
        },
    )
    out["again"] = await session.call_tool(
        "record_run",
        {"task_description": "Refund order W1", "external_id": "mcp-run-1"},
    )
    out["bad_steps"] = await session.call_tool(
        "record_run",
        {"task_description": "Refund order W2", "steps": [{"type": "thinking"}]},
    )
    out["bad_type"] = await session.call_tool("record_run", {"task_description": 5})
    started = await session.call_tool(
        "start_run", {"task_description": "Refund order W3", "external_id": "mcp-run-3"}
    )
    run_id = started.structured_content["id"]
    out["started"] = started
    out["steps"] = await session.call_tool(
        "add_steps",
        {"run_id": run_id, "steps": [{"type": "observation", "description": "ok"}]},
    )
    out["finished"] = await session.call_tool(
        "finish_run", {"run_id": run_id, "status": "success", "success_score": 1.0}
    )
    out["steps_after"] = await session.call_tool(
        "add_steps",
        {"run_id": run_id, "steps": [{"type": "observation", "description": "late"}]},
    )
    out["feedback"] = await session.call_tool(
        "add_feedback",
        {
            "run_id": run_id,
            "score": 0.2,
            "feedback_type": "human",
            "message": "the customer asked for the original card",
        },
    )
    out["bad_score"] = await session.call_tool(
        "add_feedback", {"run_id": run_id, "score": 7, "feedback_type": "human"}
    )
    out["unknown_run"] = await session.call_tool(
        "add_feedback",
        {
            "run_id": "00000000-0000-0000-0000-000000000000",
            "score": 0.5,
            "feedback_type": "human",
        },
    )
    out["propose"] = await session.call_tool(
        "propose_lesson",
        {
            "kind": "strategy_helpful",
            "content": "Refund to the card the customer names, after asking which one.",
            "playbook": "refunds",
            "evidence_runs": [run_id],
            "confidence": 0.7,
        },
    )
    out["propose_shaped"] = await session.call_tool(
        "propose_lesson",
        {
            "kind": "strategy_helpful",
            "polarity": "avoid",
            "when": "a refund is requested",
            "directive": "refunding before the order's payment method is known",
            "why": "the card was wrong",
            "playbook": "refunds",
        },
    )
    out["propose_bad"] = await session.call_tool(
        "propose_lesson", {"kind": "wisdom", "content": "x", "playbook": "nowhere"}
    )
    out["run_id"] = run_id
    return out


def _assert_conversation(out: dict, token) -> None:
    assert len(out["tools"]) >= 4
    assert out["tools"][0] == "recall_lessons"
    recall = out["recall"]
    assert not recall.is_error
    assert "lookup_order" in _texts(recall)
    assert recall.structured_content["playbook"] == "refunds"
    log = RecallLog.objects.get()
    assert log.session_id == "s-9" and log.requested_by == "token:mcp-agent"

    record = out["record"]
    assert not record.is_error and record.structured_content["created"] is True
    run = Trajectory.objects.get(external_id="mcp-run-1")
    assert run.namespace_id == token.namespace_id and run.agent == "mcp-agent"
    assert run.status == "failure" and run.reflection_status in ("pending", "reflected")
    stored = Step.objects.get(trajectory=run, index=1).description
    assert SECRET not in stored and "[REDACTED]" in stored  # the ingest redaction
    again = out["again"].structured_content
    assert again["created"] is False and again["id"] == str(run.id)

    bad = out["bad_steps"]
    assert bad.is_error
    assert "steps.0.type" in _texts(bad) and "steps.0.description" in _texts(bad)
    assert not Trajectory.objects.filter(task_description="Refund order W2").exists()
    assert out["bad_type"].is_error and "task_description" in _texts(out["bad_type"])

    assert out["started"].structured_content["status"] == "running"
    assert out["steps"].structured_content["added"] == 1
    assert out["finished"].structured_content["status"] == "success"
    late = out["steps_after"]
    assert late.is_error and "run_id" in _texts(late)

    feedback = out["feedback"].structured_content
    assert feedback["effective_score"] < 1.0 and feedback["needs_relearning"]
    assert Feedback.objects.get().message == "the customer asked for the original card"
    assert out["bad_score"].is_error and "score" in _texts(out["bad_score"])
    assert out["unknown_run"].is_error and "run_id" in _texts(out["unknown_run"])

    proposal = out["propose"].structured_content
    candidate = LearningCandidate.objects.get(pk=proposal["id"])
    assert candidate.source == "agent" and candidate.status == "pending"
    assert candidate.proposed_by == "token:mcp-agent"
    shaped = LearningCandidate.objects.get(
        pk=out["propose_shaped"].structured_content["id"]
    )
    assert shaped.polarity == "avoid"
    assert shaped.content == (
        "When a refund is requested, avoid refunding before the order's payment "
        "method is known."
    )
    assert out["propose_bad"].is_error and "kind" in _texts(out["propose_bad"])


def _stdio_params(raw: str, tmp_path) -> StdioServerParameters:
    env = child_env(tmp_path, FLYWHEEL_TOKEN=raw)
    return StdioServerParameters(
        command=sys.executable, args=["manage.py", "mcp"], env=env, cwd=str(ROOT)
    )


def test_the_tools_over_stdio(tmp_path):
    """`manage.py mcp` with FLYWHEEL_TOKEN, driven by the SDK's stdio client: recall
    returns the playbook's lessons; runs, steps, feedback and proposals go through the
    REST API's services, and bad input is a tool error naming the field."""
    token, raw = _seed()

    async def main():
        async with stdio_client(_stdio_params(raw, tmp_path)) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await _session_calls(session)

    _assert_conversation(run_async(main), token)


def test_a_revoked_token_stops_the_stdio_server_at_the_next_call(tmp_path):
    """The token is looked up on every call: revoked while the server runs, the next
    call is refused."""
    token, raw = _seed()

    async def main():
        async with stdio_client(_stdio_params(raw, tmp_path)) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                ok = await session.call_tool(
                    "recall_lessons", {"playbook": "refunds", "task": "refund"}
                )
                await asyncio.to_thread(_revoke, token)
                refused = await session.call_tool(
                    "recall_lessons", {"playbook": "refunds", "task": "refund"}
                )
                return ok, refused

    ok, refused = run_async(main)
    assert not ok.is_error
    assert refused.is_error and "revoked" in _texts(refused)


def _revoke(token):
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())


def test_stdio_without_a_token_exits_with_a_message(tmp_path):
    import subprocess

    env = child_env(tmp_path)
    env.pop("FLYWHEEL_TOKEN", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "mcp"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0 and "FLYWHEEL_TOKEN" in result.stderr
    assert result.stdout == ""  # stdout is the protocol's


def _http_client(raw: str | None) -> httpx2.AsyncClient:
    headers = {"Authorization": f"Bearer {raw}"} if raw else {}
    return httpx2.AsyncClient(headers=headers, timeout=30)


def test_the_tools_over_streamable_http(live_server):
    """POST /mcp with the REST API's bearer token, driven by the SDK's streamable
    HTTP client against the live server: the same conversation as over stdio."""
    token, raw = _seed()

    async def main():
        async with _http_client(raw) as http:
            async with streamable_http_client(
                f"{live_server.url}/mcp", http_client=http
            ) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    return await _session_calls(session)

    _assert_conversation(run_async(main), token)


def test_the_high_level_client_recalls_over_http(live_server):
    """`mcp.Client(url)` (the SDK's one-line client) lists and calls the tools."""
    _token, raw = _seed()

    async def main():
        async with _http_client(raw) as http:
            transport = streamable_http_client(
                f"{live_server.url}/mcp", http_client=http
            )
            async with Client(transport) as client:
                tools = await client.list_tools()
                result = await client.call_tool(
                    "recall_lessons", {"playbook": "refunds", "task": "refund an order"}
                )
                return tools, result

    tools, result = run_async(main)
    assert len(tools.tools) == 7
    assert "lookup_order" in _texts(result)


def test_http_needs_a_valid_token_and_stays_in_its_namespace(live_server):
    """No token or a wrong one: 401 with WWW-Authenticate, before the SDK sees the
    request. A token of another namespace sees neither its playbooks nor its runs."""
    _token, _raw = _seed()
    _other, other_raw = make_token(namespace="elsewhere", role="admin", name="other")
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "curl", "version": "0"},
        },
    }

    async def post(raw):
        async with _http_client(raw) as http:
            return await http.post(
                f"{live_server.url}/mcp",
                json=body,
                headers={"Accept": "application/json, text/event-stream"},
            )

    for raw in (None, "fw_not-a-token"):
        response = run_async(post, raw)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
    answered = run_async(post, other_raw)
    assert answered.status_code == 200
    assert answered.json()["result"]["serverInfo"]["name"] == "flywheel"

    async def other_calls():
        async with _http_client(other_raw) as http:
            async with streamable_http_client(
                f"{live_server.url}/mcp", http_client=http
            ) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    recall = await session.call_tool(
                        "recall_lessons", {"playbook": "refunds", "task": "refund"}
                    )
                    return recall

    recall = run_async(other_calls)
    assert recall.is_error and "no playbook 'refunds'" in _texts(recall)


def test_http_get_and_delete_answer_405(live_server):
    """The endpoint is stateless: no GET stream, no session to DELETE."""
    _token, raw = _seed()

    async def calls():
        async with _http_client(raw) as http:
            return [
                await http.request(method, f"{live_server.url}/mcp")
                for method in ("GET", "DELETE")
            ]

    for response in run_async(calls):
        assert response.status_code == 405 and response.headers["Allow"] == "POST"


def test_make_install_puts_the_client_in_the_virtualenv(tmp_path):
    """`make install` installs client/ into the project's virtualenv: it imports there
    from any directory, without the checkout on the path."""
    import subprocess

    python = ROOT / ".venv" / "bin" / "python"
    if not python.exists():
        python = Path(sys.executable)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [
            str(python),
            "-c",
            "import json, flywheel_client as c; "
            "print(json.dumps([c.__file__, hasattr(c, 'Flywheel')]))",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    path, has_client = json.loads(result.stdout)
    assert has_client
    assert "site-packages" in path, path  # installed, not the checkout's copy


def test_recording_runs_has_the_rest_apis_ingest_limit(live_server, settings):
    """FLYWHEEL_INGEST_RATE counts MCP posts with the same per-token counter as
    POST /api/v1/runs/: past the limit the tool answers an error saying when to retry,
    and nothing is stored."""
    from django.core.cache import caches

    caches["default"].clear()
    settings.FLYWHEEL_INGEST_RATE = "2/min"
    _token, raw = _seed()

    async def main():
        async with _http_client(raw) as http:
            async with streamable_http_client(
                f"{live_server.url}/mcp", http_client=http
            ) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    return [
                        await session.call_tool(
                            "record_run", {"task_description": f"run {i}"}
                        )
                        for i in range(3)
                    ]

    first, second, third = run_async(main)
    assert not first.is_error and not second.is_error
    assert third.is_error and "Rate limit" in _texts(third)
    assert Trajectory.objects.count() == 2
