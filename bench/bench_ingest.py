"""Ingest throughput in the steady state, through the real HTTP API (gunicorn, 2
workers, loopback), against a raw psycopg COPY of the same rows.

The runs are the 200 tau-bench airline runs (about 18 KB and 20 steps each, posted
again and again under new external ids). For each batch size (1, 20, 100 runs per
POST; a batch of 1 is posted as the run itself) 4 client threads post for at least
DURATION seconds; then the same runs are written with one COPY per table.
`ingest_ratio_vs_copy_b<N>` = API rows/s ÷ COPY rows/s; `ingest_posts_per_s_b1` is
the single-run request rate the default FLYWHEEL_INGEST_RATE is chosen against; any
429 or error fails the benchmark (the default rate must fit this fleet)."""

import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    django_setup,
    process_stop,
    report,
    runs_post,
    server_start,
    tau_bench_payloads,
)

DURATION = float(os.environ.get("BENCH_INGEST_SECONDS", 20))
BATCHES = (1, 20, 100)
CLIENTS = 4


def api_ingest(base: str, token: str, payloads: list[dict], batch: int) -> dict:
    """4 clients post batches of `batch` runs until DURATION has passed."""
    lock = threading.Lock()
    state = {"next": 0, "posted": [], "errors": [], "latencies": []}
    deadline = time.perf_counter() + DURATION

    def client():
        while time.perf_counter() < deadline:
            with lock:
                first = state["next"]
                state["next"] += batch
            runs = [
                dict(
                    payloads[(first + k) % len(payloads)],
                    external_id=f"b{batch}-{first + k}",
                )
                for k in range(batch)
            ]
            started = time.perf_counter()
            status = runs_post(base, token, runs)
            took = time.perf_counter() - started
            with lock:
                state["latencies"].append(took)
                if status in (200, 201):
                    state["posted"].extend(runs)
                else:
                    state["errors"].append(status)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state["elapsed"] = time.perf_counter() - start
    return state


def copy_ingest(namespace_id: int, runs: list[dict]) -> float:
    """The physical limit: COPY the same rows straight into the two tables."""
    import psycopg
    from django.db import connection

    dsn = connection.settings_dict
    conninfo = (
        f"host={dsn['HOST']} port={dsn['PORT']} dbname={dsn['NAME']} user={dsn['USER']}"
        + (f" password={dsn['PASSWORD']}" if dsn.get("PASSWORD") else "")
    )
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        start = time.perf_counter()  # connected: the rows alone are timed
        run_rows, step_rows = [], []
        for run in runs:
            rid = uuid.uuid4()
            run_rows.append(
                (
                    rid,
                    namespace_id,
                    run["external_id"],
                    "bench",
                    run.get("user_id") or "",
                    "",
                    run["task_description"],
                    run["task_type"],
                    run["status"],
                    run["success_score"],
                    run["success_score"],
                    "",
                    json.dumps(run.get("metrics") or {}),
                )
            )
            for idx, step in enumerate(run["steps"]):
                step_rows.append(
                    (
                        rid,
                        idx,
                        step["type"],
                        step["description"],
                        json.dumps(step["result"]) if step.get("result") else None,
                        step.get("tool") or "",
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
    payloads = tau_bench_payloads()
    # The server's reflection decisions queue tasks no worker runs: ingest alone.
    server, base = server_start(workers=2)
    results: dict = {}
    try:
        for run in payloads[:40]:  # warm-up: connections, plans, imports
            runs_post(base, raw, [dict(run, external_id="warm-" + run["external_id"])])
        sessions = {batch: api_ingest(base, raw, payloads, batch) for batch in BATCHES}
    finally:
        process_stop(server)
    for batch, state in sessions.items():
        if state["errors"]:
            raise SystemExit(f"batch {batch}: API answered {state['errors'][:5]}")
        posted = state["posted"]
        copies = [dict(r, external_id="copy-" + r["external_id"]) for r in posted]
        copy_s = copy_ingest(token.namespace_id, copies)
        rows = len(posted) + sum(len(r["steps"]) for r in posted)
        stored = Step.objects.filter(
            trajectory__namespace=token.namespace,
            trajectory__external_id__startswith=f"b{batch}-",
        ).count()
        assert stored == rows - len(posted), f"batch {batch}: {stored} steps stored"
        api_rate, copy_rate = rows / state["elapsed"], rows / copy_s
        latencies = sorted(state["latencies"])
        results[f"ingest_ratio_vs_copy_b{batch}"] = round(api_rate / copy_rate, 3)
        results[f"ingest_api_rows_per_s_b{batch}"] = round(api_rate)
        results[f"ingest_runs_b{batch}"] = len(posted)
        results[f"ingest_p95_ms_b{batch}"] = round(
            1000 * latencies[int(0.95 * (len(latencies) - 1))]
        )
        results[f"ingest_seconds_b{batch}"] = round(state["elapsed"], 1)
    results["ingest_copy_rows_per_s"] = round(copy_rate)
    results["ingest_posts_per_s_b1"] = round(
        len(sessions[1]["latencies"]) / sessions[1]["elapsed"], 1
    )
    results["ingest_ratio_vs_copy"] = results["ingest_ratio_vs_copy_b100"]
    assert Trajectory.objects.filter(namespace=token.namespace).count() >= sum(
        results[f"ingest_runs_b{b}"] * 2 for b in BATCHES
    )
    return results


if __name__ == "__main__":
    report(main())
