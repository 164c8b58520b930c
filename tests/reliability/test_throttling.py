"""Write rate limits: a token writing faster than FLYWHEEL_INGEST_RATE gets 429 (one
count per token for every write: runs, steps, completions, feedback, proposals, OTel)."""

import json

import pytest
from django.core.cache import cache

from learning.models import Trajectory
from learning.throttling import IngestRateThrottle

pytestmark = pytest.mark.django_db


def _run(n: int) -> dict:
    return {
        "external_id": f"throttle-{n}",
        "task_description": f"Change the flight of reservation R{n:04d}",
        "status": "success",
        "success_score": 1.0,
        "steps": [{"type": "message", "description": "user: change my flight"}],
    }


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def test_over_the_rate_answers_429_with_retry_after(api_factory, settings):
    """The 4th post within a minute at 3/min is refused with 429 and a Retry-After
    that says when to come back; nothing of the refused run is stored."""
    settings.FLYWHEEL_INGEST_RATE = "3/min"
    client = api_factory("acme", "agent", "fast-agent")
    for n in range(3):
        assert client.post_json("/api/v1/runs/", _run(n)).status_code == 201
    refused = client.post_json("/api/v1/runs/", _run(3))
    assert refused.status_code == 429
    retry_after = int(refused.headers["Retry-After"])
    assert 0 < retry_after <= 60
    assert "detail" in refused.json()
    assert not Trajectory.objects.filter(external_id="throttle-3").exists()
    assert Trajectory.objects.filter(namespace__slug="acme").count() == 3


def test_rate_is_per_token_and_reads_are_not_throttled(api_factory, settings):
    """One token's burst does not slow another's, and GETs are never counted."""
    settings.FLYWHEEL_INGEST_RATE = "2/min"
    first = api_factory("acme", "agent", "agent-a")
    second = api_factory("acme", "agent", "agent-b")
    for n in range(2):
        assert first.post_json("/api/v1/runs/", _run(n)).status_code == 201
    assert first.post_json("/api/v1/runs/", _run(99)).status_code == 429
    for _ in range(5):
        assert first.get("/api/v1/runs/").status_code == 200
    assert second.post_json("/api/v1/runs/", _run(2)).status_code == 201


def test_otel_endpoint_is_throttled_too(api_factory, settings):
    """The OTLP/HTTP traces endpoint shares the per-token ingest limit."""
    settings.FLYWHEEL_INGEST_RATE = "1/min"
    client = api_factory("acme", "agent", "otel-agent")
    empty = json.dumps({"resourceSpans": []})
    url = "/api/v1/otel/v1/traces"
    assert client.post(url, empty, content_type="application/json").status_code == 200
    refused = client.post(url, empty, content_type="application/json")
    assert refused.status_code == 429
    assert "Retry-After" in refused.headers


def test_rate_off_disables_the_limit(api_factory, settings):
    """FLYWHEEL_INGEST_RATE=off lets every post through."""
    settings.FLYWHEEL_INGEST_RATE = "off"
    client = api_factory("acme", "agent", "unlimited")
    for n in range(5):
        assert client.post_json("/api/v1/runs/", _run(n)).status_code == 201


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        ("1200/min", (1200, 60)),
        ("20/s", (20, 1)),
        ("5/10s", (5, 10)),
        ("100/hour", (100, 3600)),
    ],
)
def test_rate_strings(rate, expected):
    """The documented rate spellings parse to (requests, seconds)."""
    assert IngestRateThrottle().parse_rate(rate) == expected


def test_a_malformed_rate_names_the_setting():
    """A typo in the setting fails loudly with the setting's name."""
    with pytest.raises(ValueError, match="FLYWHEEL_INGEST_RATE"):
        IngestRateThrottle().parse_rate("lots")


def test_a_cache_outage_fails_open(api_factory, settings, monkeypatch, caplog):
    """If the shared cache is down, ingest keeps working (and the failure is logged)."""
    settings.FLYWHEEL_INGEST_RATE = "1/min"

    def boom(*args, **kwargs):
        raise ConnectionError("cache down")

    from django.core.cache import caches

    monkeypatch.setattr(caches["default"], "get", boom)
    client = api_factory("acme", "agent", "cacheless")
    assert client.post_json("/api/v1/runs/", _run(1)).status_code == 201
    assert client.post_json("/api/v1/runs/", _run(2)).status_code == 201
    assert "throttle cache unavailable" in caplog.text


def _running(client, external_id: str) -> str:
    body = {"external_id": external_id, "task_description": "Rebook 4WQ150"}
    response = client.post_json("/api/v1/runs/", body)
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def test_step_appends_are_counted(api_factory, settings):
    """Issue 15: 40,000 steps were appended by one token at 5/min. Appends count
    like posts: at 3/min the run and two appends pass, the third append is a 429
    with Retry-After, and its step is not stored."""
    settings.FLYWHEEL_INGEST_RATE = "3/min"
    client = api_factory("acme", "agent", "stepper")
    run_id = _running(client, "steps-1")
    step = {"steps": [{"type": "action", "description": "look up the booking"}]}
    for _ in range(2):
        assert (
            client.post_json(f"/api/v1/runs/{run_id}/steps/", step).status_code == 201
        )
    refused = client.post_json(f"/api/v1/runs/{run_id}/steps/", step)
    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert Trajectory.objects.get(pk=run_id).steps.count() == 2


def test_every_kind_of_write_shares_one_count_per_token(api_factory, settings):
    """A run, a step append, feedback, a completion, a proposal and an OTel post are
    six writes of one token: at 6/min the seventh write of any kind is refused, while
    reads stay free and another token is not affected."""
    from playbooks.services import playbook_create

    settings.FLYWHEEL_INGEST_RATE = "6/min"
    client = api_factory("acme", "agent", "writer")
    playbook_create(namespace=client.namespace, slug="airline", mode="agentic")
    run_id = _running(client, "mixed-1")
    writes = [
        (
            f"/api/v1/runs/{run_id}/steps/",
            {"steps": [{"type": "action", "description": "s"}]},
        ),
        (f"/api/v1/runs/{run_id}/feedback/", {"feedback_type": "human", "score": 0.4}),
        (f"/api/v1/runs/{run_id}/complete/", {"status": "failure", "success_score": 0}),
        (
            "/api/v1/candidates/",
            {
                "kind": "strategy_helpful",
                "playbook": "airline",
                "content": "Check the fare rules before rebooking.",
                "rationale": "r",
            },
        ),
    ]
    for url, body in writes:
        response = client.post_json(url, body)
        assert response.status_code in (200, 201), (url, response.json())
    otel = json.dumps({"resourceSpans": []})
    traces = "/api/v1/otel/v1/traces"
    assert client.post(traces, otel, content_type="application/json").status_code == 200
    for url, body in writes[1:2] + writes[3:]:
        refused = client.post_json(url, body)
        assert refused.status_code == 429 and "Retry-After" in refused.headers, url
    assert client.post(traces, otel, content_type="application/json").status_code == 429
    assert client.get(f"/api/v1/runs/{run_id}/").status_code == 200
    other = api_factory("acme", "agent", "other-writer")
    assert other.post_json("/api/v1/runs/", _run(7)).status_code == 201


def test_mcp_write_tools_share_the_count(api_factory, settings):
    """Through MCP too, every write tool (record a run, add steps, feedback, finish,
    propose) counts against the token's one limit: at 3/min the fourth is refused
    with a retry hint, and its write is not made."""
    from mcp.server.mcpserver.exceptions import ToolError

    from learning.mcp import tools

    settings.FLYWHEEL_INGEST_RATE = "3/min"
    client = api_factory("acme", "agent", "mcp-writer")
    reset = tools.caller.set(client.token)
    try:
        run = tools.run_record(payload={"task_description": "Rebook 4WQ150"})
        steps = [{"type": "action", "description": "look it up"}]
        tools.run_steps_add(run_id=run["id"], steps=steps)
        tools.feedback_record(
            run_id=run["id"], payload={"feedback_type": "human", "score": 0.5}
        )
        with pytest.raises(ToolError, match="Rate limit"):
            tools.run_steps_add(run_id=run["id"], steps=steps)
        with pytest.raises(ToolError, match="Rate limit"):
            tools.run_finish(run_id=run["id"], payload={"status": "success"})
    finally:
        tools.caller.reset(reset)
    assert Trajectory.objects.get(pk=run["id"]).steps.count() == 1
