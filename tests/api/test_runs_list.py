"""GET /api/v1/runs/: filters, pagination, constant query count; schema, docs, healthz."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from learning.models import Trajectory
from tests.factories import StepFactory, TrajectoryFactory

pytestmark = pytest.mark.django_db

RUNS = "/api/v1/runs/"


def make_runs(namespace, n, **fields):
    runs = []
    for _ in range(n):
        run = TrajectoryFactory(namespace=namespace, **fields)
        StepFactory(trajectory=run, index=0)
        StepFactory(trajectory=run, index=1)
        runs.append(run)
    return runs


def external_ids(response):
    assert response.status_code == 200, response.json()
    return sorted(r["external_id"] for r in response.json()["results"])


@pytest.fixture
def mixed(agent_client):
    ns = agent_client.namespace
    TrajectoryFactory(
        namespace=ns,
        external_id="ok-1",
        status="success",
        success_score=1.0,
        task_type="airline.book",
        agent="alpha",
    )
    TrajectoryFactory(
        namespace=ns,
        external_id="bad-1",
        status="failure",
        success_score=0.0,
        task_type="airline.book",
        agent="beta",
    )
    TrajectoryFactory(
        namespace=ns,
        external_id="half-1",
        status="partial",
        success_score=0.5,
        task_type="airline.cancel",
        agent="alpha",
    )
    old = TrajectoryFactory(
        namespace=ns,
        external_id="old-1",
        status="failure",
        success_score=0.2,
        task_type="retail",
        agent="beta",
    )
    Trajectory.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(days=30)
    )


@pytest.mark.parametrize(
    "query, expected",
    [
        ("", ["bad-1", "half-1", "ok-1", "old-1"]),
        ("?status=failure", ["bad-1", "old-1"]),
        ("?status=failure&status=partial", ["bad-1", "half-1", "old-1"]),
        ("?task_type=airline.book", ["bad-1", "ok-1"]),
        ("?agent=alpha", ["half-1", "ok-1"]),
        ("?min_score=0.5", ["half-1", "ok-1"]),
        ("?max_score=0.2", ["bad-1", "old-1"]),
        ("?min_score=0.1&max_score=0.6", ["half-1", "old-1"]),
        ("?agent=beta&status=failure&task_type=retail", ["old-1"]),
    ],
)
def test_list_filters(agent_client, mixed, query, expected):
    """status (repeatable), task_type, agent and the effective-score range filter."""
    assert external_ids(agent_client.get(RUNS + query)) == expected


def test_list_filters_by_creation_date(agent_client, mixed):
    """created_after / created_before bound the creation time."""
    cutoff = (timezone.now() - timedelta(days=7)).isoformat()
    after = agent_client.get(RUNS, {"created_after": cutoff})
    before = agent_client.get(RUNS, {"created_before": cutoff})
    assert external_ids(after) == ["bad-1", "half-1", "ok-1"]
    assert external_ids(before) == ["old-1"]


@pytest.mark.parametrize(
    "query, field",
    [
        ("?status=exploded", "status"),
        ("?min_score=high", "min_score"),
        ("?created_after=last-tuesday", "created_after"),
    ],
)
def test_bad_filters_are_a_400_naming_the_filter(agent_client, query, field):
    """An invalid filter value is a 400 naming it, not an empty list or a 500."""
    response = agent_client.get(RUNS + query)
    assert response.status_code == 400
    assert field in response.json()


def test_list_pages_newest_first(agent_client):
    """page_size pages through every run exactly once, newest first."""
    make_runs(agent_client.namespace, 5)
    seen, url = [], RUNS + "?page_size=2"
    while url:
        body = agent_client.get(url).json()
        assert body["count"] == 5
        seen += [r["id"] for r in body["results"]]
        url = body["next"]
    assert len(seen) == len(set(seen)) == 5
    newest_first = list(
        Trajectory.objects.order_by("-created_at", "-id").values_list("id", flat=True)
    )
    assert seen == [str(i) for i in newest_first]
    assert agent_client.get(RUNS + "?page=9").status_code == 404


def test_list_items_carry_their_step_count(agent_client):
    """Each list item says how many steps the run has (without loading them)."""
    make_runs(agent_client.namespace, 2)
    results = agent_client.get(RUNS).json()["results"]
    assert [r["step_count"] for r in results] == [2, 2]
    assert "steps" not in results[0]


def test_list_query_count_does_not_grow_with_the_page(
    agent_client, django_assert_num_queries
):
    """2 rows and 20 rows cost the same number of queries (no N+1)."""
    make_runs(agent_client.namespace, 2)
    agent_client.get(RUNS)  # warm up: the token's last_used_at is written once
    with CaptureQueriesContext(connection) as two:
        assert len(agent_client.get(RUNS).json()["results"]) == 2
    make_runs(agent_client.namespace, 18)
    with django_assert_num_queries(len(two.captured_queries)):
        assert len(agent_client.get(RUNS).json()["results"]) == 20


def test_detail_query_count_does_not_grow_with_steps(
    agent_client, django_assert_num_queries
):
    """A run's detail costs the same queries for 2 steps as for 40."""
    small, big = make_runs(agent_client.namespace, 2)
    for index in range(2, 40):
        StepFactory(trajectory=big, index=index)
    agent_client.get(f"{RUNS}{small.id}/")
    with CaptureQueriesContext(connection) as few:
        agent_client.get(f"{RUNS}{small.id}/")
    with django_assert_num_queries(len(few.captured_queries)):
        assert len(agent_client.get(f"{RUNS}{big.id}/").json()["steps"]) == 40


def test_schema_documents_the_runs_endpoints(client):
    """The OpenAPI document is public and describes every runs endpoint."""
    response = client.get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/api/v1/runs/",
        "/api/v1/runs/{run_id}/",
        "/api/v1/runs/{run_id}/steps/",
        "/api/v1/runs/{run_id}/complete/",
        "/api/v1/runs/{run_id}/feedback/",
    ):
        assert path in paths
    assert "post" in paths["/api/v1/runs/"] and "get" in paths["/api/v1/runs/"]
    assert "bearerAuth" in response.json()["components"]["securitySchemes"]


def test_docs_page_uses_only_local_assets(client):
    """The browsable docs page loads Swagger UI from our static files: no CDN."""
    response = client.get("/api/v1/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert (
        "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    )
    assert "cdn." not in html and "https://" not in html


def test_healthz_reports_database_and_worker(client):
    """/healthz answers without a token: the database and the worker state."""
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert "worker_alive" in body


def test_healthz_is_503_json_when_the_database_is_down(client, monkeypatch):
    """A database failure is reported, as JSON with 503, not raised."""
    from django.db import OperationalError

    from learning.api import views

    class Broken:
        def cursor(self):
            raise OperationalError("connection refused")

    monkeypatch.setattr(views, "connection", Broken())
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "degraded"
    assert response.json()["database"].startswith("error")


def test_worker_status_reads_cluster_heartbeats(settings, monkeypatch):
    """Outside sync mode the worker is alive only with a recent, running heartbeat."""
    from types import SimpleNamespace

    from django_q.status import Stat

    from learning.services.health import worker_status

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    now = timezone.now()
    monkeypatch.setattr(Stat, "get_all", staticmethod(lambda: []))
    assert worker_status()["worker_alive"] is False
    stale = SimpleNamespace(status="Idle", timestamp=now - timedelta(minutes=5))
    stopped = SimpleNamespace(status="Stopped", timestamp=now)
    monkeypatch.setattr(Stat, "get_all", staticmethod(lambda: [stale, stopped]))
    assert worker_status()["worker"] == "down"
    fresh = SimpleNamespace(status="Idle", timestamp=now)
    monkeypatch.setattr(Stat, "get_all", staticmethod(lambda: [stale, fresh]))
    assert worker_status() == {"worker": "alive", "worker_alive": True, "clusters": 1}
