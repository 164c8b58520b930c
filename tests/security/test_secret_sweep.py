"""Secrets planted through every way in never reach the database or an export (issue
15 item 7: a pg_dump grep found raw keys in run ids, tool names, metric and result keys,
header values, feedback, proposals, the recall log and OTel attributes).

Over 60 distinct secrets go in through the REST API (runs, batches, step appends,
completions, feedback, proposals, recall), OTLP/JSON, the importer, and the MCP
tools; then `pg_dump` of the whole test database and every export (sft, preferences,
episodes) are searched for each of them: none may be found."""

import base64
import glob
import json
import os
import subprocess
from itertools import count

import pytest
from django.db import connection

from learning.mcp import tools as mcp_tools
from tests.ecosystem import otlp
from tests.factories import make_playbook, make_token

pytestmark = pytest.mark.django_db(transaction=True)

_n = count(1000)
PLANTED: list[str] = []


def plant(secret: str) -> str:
    PLANTED.append(secret)
    return secret


def anthropic() -> str:
    return plant(f"sk-ant-api03-Zq8v{next(_n)}T4mN2pR7wX1yB5cD9f")


def github() -> str:
    return plant(f"ghp_{next(_n)}R4nd0mT0k3nV4lu3F0rT3st1ngOnlyXy")


def aws() -> str:
    return plant(f"AKIAQ{next(_n)}W3ERT5YU8IO")


def slack() -> str:
    return plant(f"xoxb-2048-{next(_n)}-Sl4ckT0k3nV4lu3")


def opaque(prefix: str) -> str:
    """A secret with no shape of its own: only its context says it is one."""
    return plant(f"{prefix}{next(_n)}f7a9c2e1b4d6")


def cookie() -> str:
    return f"Cookie: sessionid={opaque('sess')}; csrftoken={opaque('csrf')}"


def auth_token() -> str:
    return f"Authorization: Token {opaque('tok')}"


def x_auth() -> str:
    return f"X-Auth: {opaque('xauth')}"


def passwd() -> str:
    return f"passwd {opaque('pw')}"


def b64_key() -> str:
    encoded = base64.b64encode(anthropic().encode()).decode()
    return plant(encoded)


def texts() -> str:
    """Free text carrying one of each contextual form."""
    return f"{cookie()} then {auth_token()}, {x_auth()}, run {passwd()} and {b64_key()}"


def _result() -> dict:
    return {
        "X-Auth": opaque("xa"),
        "session_token": opaque("st"),
        "headers": {"Cookie": f"sessionid={opaque('ck')}"},
        github(): "a result key that is a key",
        "note": texts(),
    }


def _run(external_id: str, status: str = "success", score: float = 1.0) -> dict:
    return {
        "external_id": external_id,
        "task_description": f"Rebook flight 4WQ150 for the client; {texts()}",
        "task_type": anthropic(),
        "agent": github(),
        "user_id": anthropic(),
        "session_id": aws(),
        "playbook_versions": [slack()],
        "status": status,
        "success_score": score,
        "error_message": "" if status == "success" else texts(),
        "metrics": {anthropic(): 1, "env": {"session_token": opaque("env")}},
        "steps": [
            {"type": "message", "description": f"user: rebook {texts()}"},
            {
                "type": "tool_call",
                "tool": github(),
                "description": f"lookup({auth_token()})",
                "result": _result(),
            },
            {"type": "message", "description": "assistant: rebooked"},
        ],
    }


def _rest(agent_client):
    assert agent_client.post_json("/api/v1/runs/", _run("rest-1")).status_code == 201
    batch = {"runs": [_run("rest-2", "failure", 0.0), _run("rest-3")]}
    assert agent_client.post_json("/api/v1/runs/", batch).status_code == 201
    started = agent_client.post_json(
        "/api/v1/runs/",
        {"task_description": f"start {texts()}", "status": "running", "user_id": aws()},
    ).json()["id"]
    step = _run("x")["steps"][1]
    appended = agent_client.post_json(
        f"/api/v1/runs/{started}/steps/", {"steps": [step]}
    )
    assert appended.status_code == 201, appended.json()
    done = agent_client.post_json(
        f"/api/v1/runs/{started}/complete/",
        {
            "status": "failure",
            "success_score": 0.0,
            "error_message": texts(),
            "metrics": {slack(): 2},
            "playbook_versions": [github()],
        },
    )
    assert done.status_code == 200, done.json()
    feedback = agent_client.post_json(
        f"/api/v1/runs/{started}/feedback/",
        {
            "feedback_type": "human",
            "score": 0.9,
            "source": anthropic(),
            "message": texts(),
            "metrics": {github(): 1, "X-Auth": opaque("fx")},
        },
    )
    assert feedback.status_code == 201, feedback.json()


def _proposals_and_recall(agent_client):
    make_playbook(agent_client.namespace, slug="airline", mode="agentic")
    for body in (
        {
            "kind": "strategy_helpful",
            "playbook": "airline",
            "content": f"Authenticate first with {texts()}",
            "rationale": f"worked with {anthropic()}",
        },
        {
            "kind": "durable_fact",
            "playbook": "airline",
            "content": f"The client's key is {github()}",
            "user_id": anthropic(),
            "entity": aws(),
        },
    ):
        response = agent_client.post_json("/api/v1/candidates/", body)
        assert response.status_code == 201, response.json()
    recall = agent_client.get(
        "/api/v1/playbooks/airline/context/",
        {"task": f"rebook {texts()}", "session_id": anthropic(), "run": "rest-1"},
    )
    assert recall.status_code == 200, recall.json()


def _otel(agent_client):
    trace, root = otlp.new_id(), otlp.new_id(8)
    body = otlp.export(
        otlp.span(
            trace,
            "invoke_agent bot",
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": github(),
                "gen_ai.conversation.id": anthropic(),
                "user.id": aws(),
                "flywheel.task_type": slack(),
                "flywheel.task_description": f"otel task {texts()}",
                "flywheel.status": "success",
                "flywheel.success_score": 1.0,
            },
            span_id=root,
            end_ms=9,
        ),
        otlp.span(
            trace,
            "execute_tool x",
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": anthropic(),
                "gen_ai.tool.call.arguments": json.dumps(
                    {"headers": {"X-Auth": opaque("oa")}, "q": texts()}
                ),
            },
            parent=root,
            start_ms=1,
            end_ms=2,
        ),
        service=github(),
    )
    response = otlp.post(agent_client, body)
    assert response.status_code == 200, response.content


def _importer(agent_client, tmp_path):
    from learning.importers import runs_import

    path = tmp_path / "runs.jsonl"
    path.write_text(json.dumps(_run("imported-1")) + "\n")
    report = runs_import(
        path=path, fmt="jsonl", namespace=agent_client.namespace, agent="importer"
    )
    assert report.created == 1, report


def _mcp(agent_client):
    token, _raw = make_token(namespace=agent_client.namespace.slug, name="mcp-bot")
    reset = mcp_tools.caller.set(token)
    try:
        run = mcp_tools.run_record(payload={**_run("mcp-1"), "status": "running"})
        mcp_tools.run_steps_add(run_id=run["id"], steps=[_run("x")["steps"][1]])
        mcp_tools.feedback_record(
            run_id=run["id"],
            payload={
                "feedback_type": "human",
                "score": 0.5,
                "source": github(),
                "metrics": {anthropic(): 1},
            },
        )
        mcp_tools.lesson_propose(
            payload={
                "kind": "strategy_helpful",
                "playbook": "airline",
                "content": f"Use the header {x_auth()} when rebooking",
                "rationale": slack(),
            }
        )
        mcp_tools.recall_lessons(
            playbook="airline",
            task=f"rebook {cookie()}",
            task_type="",
            budget=None,
            session_id=github(),
            run="",
            user_id=None,
        )
    finally:
        mcp_tools.caller.reset(reset)


def _pg_dump() -> str:
    binary = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"))[-1]
    settings = connection.settings_dict
    env = {
        **os.environ,
        "PGHOST": settings["HOST"] or "127.0.0.1",
        "PGPORT": str(settings["PORT"] or 5432),
        "PGUSER": settings["USER"] or "postgres",
        "PGPASSWORD": settings["PASSWORD"] or "",
    }
    out = subprocess.run(
        [binary, "--data-only", settings["NAME"]],
        env=env,
        capture_output=True,
        check=True,
        timeout=120,
    )
    return out.stdout.decode("utf-8")


def _exports(client) -> str:
    out = []
    for format, query in (
        ("sft", "?min_score=0"),
        ("preferences", ""),
        ("episodes", ""),
    ):
        response = client.get(f"/api/v1/exports/{format}/{query}")
        assert response.status_code == 200
        out.append(b"".join(response.streaming_content).decode())
    return "\n".join(out)


def test_planted_secrets_are_nowhere_in_pg_dump_or_any_export(
    agent_client, reviewer_client, tmp_path
):
    PLANTED.clear()
    _rest(agent_client)
    _proposals_and_recall(agent_client)
    _otel(agent_client)
    _importer(agent_client, tmp_path)
    _mcp(agent_client)
    planted = sorted(set(PLANTED))
    assert len(planted) >= 50, len(planted)

    dump = _pg_dump()
    assert "Rebook flight 4WQ150" in dump and "otel task" in dump  # the dump sees it
    assert "rebook" in dump.lower() and "playbooks_recalllog" in dump
    leaked = [s for s in planted if s in dump]
    assert leaked == [], f"{len(leaked)} of {len(planted)} in pg_dump: {leaked[:5]}"

    exported = _exports(reviewer_client)
    assert exported.count("\n") >= 4, exported[:500]
    leaked = [s for s in planted if s in exported]
    assert leaked == [], f"{len(leaked)} of {len(planted)} in exports: {leaked[:5]}"
