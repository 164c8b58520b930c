"""Scale-out on Redis: the documented path to more workers on more machines.

Django-Q2 uses one broker per cluster. With Q_BROKER_URL=redis://… the web side
enqueues on Redis and any number of `qcluster` processes, on any machine, share the
queue: here two of them, beside a gunicorn web server, against a real redis-server.
"""

import pytest

from learning.models import ReflectionStatus, Trajectory
from learning.services.tokens import token_create
from tests.reliability.procs import post_json, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _ready(tmp_path, name: str) -> bool:
    log = tmp_path / f"qcluster-{name}.log"
    return log.exists() and "ready for work" in log.read_text(errors="replace")


def test_two_clusters_on_one_redis_broker_share_the_web_sides_tasks(
    redis_url, qclusters, gunicorn, tmp_path, monkeypatch
):
    """Failed runs posted to a web server configured with the Redis broker are all
    reflected by two qcluster processes on that broker; and tasks enqueued the same
    way are run by both clusters (each takes a share), each exactly once."""
    from django_q.brokers.redis_broker import Redis
    from django_q.conf import Conf
    from django_q.tasks import async_task

    env = {"Q_BROKER_URL": redis_url, "Q_WORKERS": 1, "Q_TIMEOUT": 30, "Q_RETRY": 40}
    first = qclusters("a", **env)
    second = qclusters("b", **env)
    wait_for(
        lambda: _ready(tmp_path, "a") and _ready(tmp_path, "b"),
        timeout=60,
        interval=0.2,
        what="both clusters",
    )

    # The web side: runs posted over HTTP queue their reflection on Redis.
    server = gunicorn(workers=1, Q_BROKER_URL=redis_url)
    _token, raw = token_create(name="scale-agent", namespace_slug="scale", role="agent")
    for n in range(4):
        status, body = post_json(
            f"{server.url}/api/v1/runs/",
            raw,
            {
                "external_id": f"scale-{n}",
                "task_type": "airline.change_flight",
                "task_description": f"Change reservation R{n:04d} to the evening flight",
                "status": "failure",
                "success_score": 0.0,
                "steps": [
                    {
                        "type": "tool_call",
                        "tool": "update_reservation_flights",
                        "description": f'update_reservation_flights({{"reservation_id": "R{n:04d}"}})',
                    },
                    {
                        "type": "observation",
                        "description": "Error: flight not available",
                    },
                ],
            },
        )
        assert status == 201, body
    runs = Trajectory.objects.filter(namespace__slug="scale")
    wait_for(
        lambda: runs.filter(reflection_status=ReflectionStatus.REFLECTED).count() == 4,
        timeout=90,
        interval=0.3,
        what="the runs to be reflected by the Redis workers",
    )
    from django_q.models import OrmQ

    assert OrmQ.objects.count() == 0  # nothing went through the database broker

    # Enqueued with the same settings the web side uses: both clusters take a share.
    monkeypatch.setattr(Conf, "REDIS", redis_url)
    broker = Redis()
    markers = tmp_path / "markers"
    markers.mkdir()
    for n in range(16):
        async_task(
            "tests.reliability.tasks.record_worker",
            str(markers),
            n,
            broker=broker,
            sync=False,
        )
    wait_for(
        lambda: len(list(markers.iterdir())) >= 16,
        timeout=90,
        interval=0.2,
        what="16 tasks to run",
    )
    done = [path.name.split("-") for path in markers.iterdir()]
    assert sorted(int(n) for _task, n, _group in done) == list(range(16))  # each once
    assert {int(group) for *_rest, group in done} == {first.pid, second.pid}
    assert broker.queue_size() == 0


def test_the_ingest_limit_is_shared_between_web_processes_through_redis(
    redis_url, gunicorn
):
    """With FLYWHEEL_CACHE_URL on Redis, two gunicorn workers count one token's posts
    together: at 5/min exactly 5 of 8 posts are stored, the rest get 429, and the
    count lives in Redis."""
    import redis

    server = gunicorn(
        workers=2, FLYWHEEL_CACHE_URL=redis_url, FLYWHEEL_INGEST_RATE="5/min"
    )
    token, raw = token_create(name="limited", namespace_slug="limited", role="agent")
    statuses = []
    for n in range(8):
        status, _body = post_json(
            f"{server.url}/api/v1/runs/",
            raw,
            {
                "external_id": f"limited-{n}",
                "task_description": "Look up a reservation",
                "status": "running",
            },
        )
        statuses.append(status)
    assert statuses == [201] * 5 + [429] * 3
    assert Trajectory.objects.filter(namespace__slug="limited").count() == 5
    keys = redis.Redis.from_url(redis_url).keys(f"*throttle:ingest:{token.pk}")
    assert len(keys) == 1
