"""Faults: a worker killed mid-task, database connections dropped under load.

Model API failures (timeouts, 500, 429, malformed output) falling back to the offline
reflector are covered by the pipeline's own tests
(tests/learning/test_reflect_claude.py), not repeated here.
"""

import os
import signal
import threading
import time

import pytest
from django.db import connection

from learning.models import Step, Trajectory
from learning.services.tokens import token_create
from tests.reliability.procs import run_posters, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_worker_killed_mid_task_is_retried_and_finishes(qclusters, tmp_path):
    """kill -9 of a qcluster while it runs a task leaves the task on the ORM broker;
    once the lease (Q_RETRY) runs out another cluster runs it to completion and stores
    its success, and nothing is left queued."""
    from django_q.models import OrmQ, Success
    from django_q.tasks import async_task

    markers = tmp_path / "markers"
    markers.mkdir()
    timing = {"Q_TIMEOUT": 5, "Q_RETRY": 6, "Q_WORKERS": 1}
    first = qclusters("first", **timing)
    task_id = async_task(
        "tests.reliability.tasks.attempt_then_finish",
        str(markers),
        60,
        sync=False,
        task_name="reliability-kill",
    )
    attempt = wait_for(
        lambda: list(markers.glob("attempt-1-*")),
        timeout=60,
        interval=0.05,
        what="the first attempt to start",
    )
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    assert not (markers / "done").exists()
    assert OrmQ.objects.count() == 1  # not acknowledged: still queued, under its lease

    qclusters("second", **timing)
    wait_for(
        lambda: Success.objects.filter(id=task_id).exists(),
        timeout=60,
        interval=0.2,
        what="the retried task to succeed",
    )
    success = Success.objects.get(id=task_id)
    assert success.result == "done on attempt 2"
    first_pid = attempt[0].name.rsplit("-", 1)[1]
    second = list(markers.glob("attempt-2-*"))
    assert len(second) == 1 and second[0].name.rsplit("-", 1)[1] != first_pid
    assert (markers / "done").read_text() != first_pid
    wait_for(lambda: OrmQ.objects.count() == 0, timeout=10, what="the ack")


def _run(n: int, steps: int) -> dict:
    return {
        "external_id": f"outage-{n}",
        "task_description": f"Cancel reservation R{n:04d}",
        "task_type": "airline.cancel",
        "status": "success",
        "success_score": 1.0,
        "steps": [
            {
                "type": "action",
                "description": f"step {i} of run {n}",
                "result": {"i": i},
            }
            for i in range(steps)
        ],
    }


def test_dropped_database_connections_never_half_store_a_run(gunicorn, tmp_path):
    """While 4 clients post 60 runs of 20 steps, every server backend is terminated
    (pg_terminate_backend) every 150 ms for the first ~6 s. Clients get only 5xx or
    connection errors, which they retry; every run ends up stored exactly once with
    all 20 steps, and no run is ever visible without its steps."""
    server = gunicorn(workers=2)
    _token, raw = token_create(
        name="outage-agent", namespace_slug="outage", role="agent"
    )
    runs = [_run(n, 20) for n in range(60)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        own_pid = cursor.fetchone()[0]  # this test's connection survives
    stop = threading.Event()
    kills = []
    partial_seen = []

    def killer():
        try:
            with connection.cursor() as cursor:
                while not stop.is_set():
                    # A bounded outage (40 rounds, ~6 s): then the retries must win.
                    if len(kills) < 40:
                        cursor.execute(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                            "AND pid <> %s AND backend_type = 'client backend'",
                            [own_pid],
                        )
                        kills.append(cursor.fetchone()[0])
                    # Atomicity as seen from outside: no stored run lacks a step.
                    cursor.execute(
                        "SELECT t.external_id, count(s.id) FROM learning_trajectory t "
                        "LEFT JOIN learning_step s ON s.trajectory_id = t.id "
                        "JOIN learning_namespace n ON n.id = t.namespace_id "
                        "WHERE n.slug = 'outage' GROUP BY t.external_id "
                        "HAVING count(s.id) <> 20"
                    )
                    partial_seen.extend(cursor.fetchall())
                    time.sleep(0.15)
        finally:
            connection.close()

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        results = run_posters(
            f"{server.url}/api/v1/runs/",
            raw,
            [runs[i::4] for i in range(4)],
            tmp_path,
            retries=30,
            delay=0.3,
            timeout=300,
        )
    finally:
        stop.set()
        thread.join(timeout=30)

    errors = [e for records in results for r in records for e in r["errors"]]
    print(f"{sum(kills)} backends terminated, {len(errors)} requests retried")
    assert sum(kills) > 0
    assert errors, "no request was interrupted: the test did not exercise the fault"
    for error in errors:
        assert error["status"] == 0 or error["status"] >= 500, error
    for records in results:
        for record in records:
            assert record["status"] in (200, 201), record
    assert partial_seen == []
    stored = Trajectory.objects.filter(namespace__slug="outage")
    assert stored.count() == 60
    assert Step.objects.filter(trajectory__in=stored).count() == 60 * 20
