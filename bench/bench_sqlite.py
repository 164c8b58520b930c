"""The embedded default (`make run`: SQLite, the ORM broker) under a small fleet: does
ingest stay fast and does the worker keep reflecting while agents post?

A fresh SQLite file (the settings' WAL, IMMEDIATE transactions and busy_timeout) holds
the 200 tau-bench airline runs BACKLOG_COPIES times, all pending reflection. One
`qcluster` (Q_WORKERS=1) reflects them: first alone for IDLE_S seconds, then for BUSY_S seconds
while 4 clients post batches of 20 tau-bench-sized runs to gunicorn (2 workers) on the
same file. The posted runs are successes that are not sampled, so the worker's queue
is the backlog alone. Prints `sqlite_ingest_p95_ms_b20` (request time), the errors
(any answer but 201, `sqlite_ingest_errors`), and `sqlite_reflection_busy_vs_idle`
(runs reflected per second while posting ÷ alone)."""

import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    django_setup,
    percentile,
    process_stop,
    report,
    runs_post,
    server_start,
    tau_bench_payloads,
    worker_ready,
    worker_start,
)

BACKLOG_COPIES = 40
IDLE_S = 15.0
BUSY_S = 20.0
CLIENTS = 4
BATCH = 20
FANOUT = 50


def reflected_count() -> int:
    from learning.models import ReflectionStatus, Trajectory

    return Trajectory.objects.filter(
        reflection_status=ReflectionStatus.REFLECTED
    ).count()


def post_while(base: str, raw: str, payloads: list[dict], seconds: float) -> dict:
    lock = threading.Lock()
    state = {"next": 0, "latencies": [], "errors": []}
    deadline = time.perf_counter() + seconds

    def client():
        while time.perf_counter() < deadline:
            with lock:
                first = state["next"]
                state["next"] += BATCH
            runs = [
                dict(
                    payloads[(first + k) % len(payloads)],
                    external_id=f"fleet-{first + k}",
                    status="success",
                    success_score=1.0,
                )
                for k in range(BATCH)
            ]
            started = time.perf_counter()
            status = runs_post(base, raw, runs)
            with lock:
                state["latencies"].append(time.perf_counter() - started)
                if status != 201:
                    state["errors"].append(status)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return state


def main() -> dict:
    folder = tempfile.mkdtemp(prefix="bench-sqlite-")
    os.environ["DATABASE_URL"] = f"sqlite:///{folder}/flywheel.sqlite3"
    os.environ["Q_STATS_DIR"] = f"{folder}/q-stats"
    os.environ["Q_SYNC"] = "false"
    django_setup(sqlite=True)
    from django.conf import settings
    from django_q.models import OrmQ

    from learning.models import ReflectionStatus, Trajectory
    from learning.queue import task_send
    from learning.services.reflection import FANOUT_TASK
    from learning.services.runs import runs_ingest
    from learning.services.tokens import namespace_get_or_create, token_create

    assert settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")
    settings.FLYWHEEL_SUCCESS_SAMPLE_RATE = 1.0  # the backlog: every run pending
    payloads = tau_bench_payloads()
    # 8,000 runs: on quiet machines backlogs of 800, 2,000, then 4,000 (2026-12-04,
    # reflecting 150+ runs/s alone) ran out within the ~37 s measured.
    for slug in [f"backlog-{n}" for n in range(BACKLOG_COPIES)]:
        namespace = namespace_get_or_create(slug=slug)
        for i in range(0, len(payloads), 50):
            runs_ingest(namespace=namespace, agent="bench", runs=payloads[i : i + 50])
    OrmQ.objects.all().delete()
    _, raw = token_create(name="fleet", namespace_slug="fleet", role="agent")

    server, base = server_start(workers=2, FLYWHEEL_SUCCESS_SAMPLE_RATE="0")
    worker = worker_start()
    try:
        worker_ready()
        pending = [
            str(pk)
            for pk in Trajectory.objects.filter(
                reflection_status=ReflectionStatus.PENDING
            ).values_list("pk", flat=True)
        ]
        for i in range(0, len(pending), FANOUT):
            task_send(FANOUT_TASK, pending[i : i + FANOUT], group="reflection")
        time.sleep(2.0)  # past the fan-outs and the first peer loads
        done0, t0 = reflected_count(), time.perf_counter()
        time.sleep(IDLE_S)
        done1, t1 = reflected_count(), time.perf_counter()
        state = post_while(base, raw, payloads, BUSY_S)
        done2, t2 = reflected_count(), time.perf_counter()
    finally:
        process_stop(worker)
        process_stop(server)
        shutil.rmtree(folder, ignore_errors=True)
    assert done2 < len(pending), "the backlog ran out: the busy rate is not measured"
    idle_rate = (done1 - done0) / (t1 - t0)
    busy_rate = (done2 - done1) / (t2 - t1)
    latencies = state["latencies"]
    return {
        "sqlite_ingest_p95_ms_b20": round(1000 * percentile(latencies, 0.95)),
        "sqlite_ingest_p50_ms_b20": round(1000 * percentile(latencies, 0.5)),
        "sqlite_ingest_posts": len(latencies),
        "sqlite_ingest_errors": len(state["errors"]),
        "sqlite_reflection_idle_runs_per_s": round(idle_rate, 2),
        "sqlite_reflection_busy_runs_per_s": round(busy_rate, 2),
        "sqlite_reflection_busy_vs_idle": round(busy_rate / idle_rate, 2)
        if idle_rate
        else 0.0,
    }


if __name__ == "__main__":
    report(main())
