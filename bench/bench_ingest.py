"""Ingest throughput through the real HTTP API (gunicorn, 2 workers, loopback) against
a raw psycopg COPY of the same rows: `ingest_ratio_vs_copy` = API rows/s ÷ COPY rows/s."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, django_setup, report  # noqa: E402

RUNS = int(os.environ.get("BENCH_INGEST_RUNS", 1200))
STEPS = 25
BATCH = int(os.environ.get("BENCH_INGEST_BATCH", 100))
CLIENTS = 2

TOOLS = [
    "get_reservation_details",
    "get_user_details",
    "search_direct_flight",
    "update_reservation_flights",
    "cancel_reservation",
    "book_reservation",
]


def make_run(i: int, prefix: str) -> dict:
    steps = []
    for s in range(STEPS):
        kind = ("message", "tool_call", "observation")[s % 3]
        tool = TOOLS[s % len(TOOLS)] if kind == "tool_call" else ""
        steps.append(
            {
                "type": kind,
                "tool": tool,
                "description": (
                    f"{tool}(reservation_id='R{i:05d}', user_id='mia_li_{s}')"
                    if tool
                    else f"user: I would like to change my flight {i} to the next day, economy cabin, "
                    f"and keep my two checked bags; step {s} of the conversation."
                ),
                "result": {"status": "ok", "step": s}
                if kind == "observation"
                else None,
            }
        )
    return {
        "external_id": f"{prefix}-{i}",
        "task_description": f"Change the flight of reservation R{i:05d} to the next day",
        "task_type": "airline.change_flight",
        "user_id": f"user_{i % 97}",
        "status": "failure" if i % 3 else "success",
        "success_score": 0.0 if i % 3 else 1.0,
        "steps": steps,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_ingest(base: str, token: str, runs: list[dict]) -> float:
    batches = [runs[i : i + BATCH] for i in range(0, len(runs), BATCH)]
    errors = []

    def worker(mine):
        for batch in mine:
            body = json.dumps({"runs": batch}).encode()
            req = urllib.request.Request(
                base + "/api/v1/runs/",
                data=body,
                method="POST",
                headers={
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {token}",
                },
            )
            with urllib.request.urlopen(req, timeout=120) as resp:
                if resp.status not in (200, 201):
                    errors.append(resp.status)

    threads = [
        threading.Thread(target=worker, args=(batches[k::CLIENTS],))
        for k in range(CLIENTS)
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise SystemExit(f"API errors: {errors[:5]}")
    return elapsed


def copy_ingest(namespace_id: int, runs: list[dict]) -> float:
    """The physical limit: COPY the same rows straight into the two tables."""
    import psycopg
    from django.db import connection

    dsn = connection.settings_dict
    conninfo = (
        f"host={dsn['HOST']} port={dsn['PORT']} dbname={dsn['NAME']} user={dsn['USER']}"
        + (f" password={dsn['PASSWORD']}" if dsn.get("PASSWORD") else "")
    )
    start = time.perf_counter()
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        run_rows, step_rows = [], []
        for run in runs:
            rid = uuid.uuid4()
            run_rows.append(
                (
                    rid,
                    namespace_id,
                    run["external_id"],
                    "bench",
                    run["user_id"],
                    "",
                    run["task_description"],
                    run["task_type"],
                    run["status"],
                    run["success_score"],
                    run["success_score"],
                )
            )
            for idx, step in enumerate(run["steps"]):
                step_rows.append(
                    (
                        rid,
                        idx,
                        step["type"],
                        step["description"],
                        json.dumps(step["result"]) if step["result"] else None,
                        step["tool"],
                    )
                )
        with cur.copy(
            "COPY learning_trajectory (id, namespace_id, external_id, agent, user_id, session_id,"
            " task_description, task_type, status, success_score, effective_score, error_message,"
            " metrics, playbook_versions, needs_relearning, relearning_priority, redacted,"
            " redaction_count, reflection_status, reflection_reason, reflection_error,"
            " reflection_attempts, created_at, updated_at) FROM STDIN"
        ) as copy:
            for row in run_rows:
                copy.write_row(
                    row
                    + (
                        "",
                        "{}",
                        "[]",
                        False,
                        0,
                        False,
                        0,
                        "skipped",
                        "",
                        "",
                        0,
                        "now",
                        "now",
                    )
                )
        with cur.copy(
            "COPY learning_step (trajectory_id, index, type, description, result, tool, created_at)"
            " FROM STDIN"
        ) as copy:
            for row in step_rows:
                copy.write_row(row + ("now",))
        conn.commit()
    return time.perf_counter() - start


def main() -> dict:
    django_setup()
    from learning.models import Step, Trajectory
    from learning.services.tokens import token_create

    token, raw = token_create(
        name="bench-agent", namespace_slug="bench-ingest", role="agent"
    )
    port = free_port()
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="config.settings", Q_SYNC="false")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "--timeout",
            "120",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2)
                break
            except Exception:
                time.sleep(0.2)
        api_ingest(
            base, raw, [make_run(i, "warm") for i in range(2 * BATCH)]
        )  # warm up
        api_runs = [make_run(i, "api") for i in range(RUNS)]
        api_s = api_ingest(base, raw, api_runs)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
    copy_s = copy_ingest(token.namespace_id, [make_run(i, "copy") for i in range(RUNS)])
    stored = Step.objects.filter(
        trajectory__namespace=token.namespace,
        trajectory__external_id__startswith="api-",
    ).count()
    assert stored == RUNS * STEPS, f"API stored {stored} steps, expected {RUNS * STEPS}"
    assert (
        Trajectory.objects.filter(namespace=token.namespace).count()
        == RUNS * 2 + 2 * BATCH
    )
    rows = RUNS * (STEPS + 1)
    return {
        "ingest_ratio_vs_copy": round(copy_s / api_s, 3),
        "ingest_api_rows_per_s": round(rows / api_s),
        "ingest_copy_rows_per_s": round(rows / copy_s),
    }


if __name__ == "__main__":
    report(main())
