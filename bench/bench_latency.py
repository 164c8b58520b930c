"""Time from a posted failure to its audited candidate, with ONE worker on the default
ORM broker, and what the broker's polling costs an idle worker.

The 200 tau-bench airline runs are stored first as the peers a failure is contrasted
with (nothing queued). Then one `qcluster` (Q_WORKERS=1) runs, and failures of the
fixture are posted one at a time through the API view (in-process client, token auth):
the clock runs from the POST to the moment every candidate of that run is audited
(the run's reflection task, which audits the candidates it made once it commits:
one trip through the broker).
Between samples the candidates are deleted, so every sample makes new candidates.
Prints `ttc_p50_ms` / `ttc_p95_ms` at the settings' poll interval and at 0.5 s (the
previous default), and the idle worker's CPU (its processes and its database backends)
at each poll interval, as a percentage of one core."""

import copy
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    cpu_seconds,
    database_backends,
    django_setup,
    percentile,
    process_stop,
    process_tree,
    report,
    tau_bench_payloads,
    worker_ready,
    worker_start,
)

SAMPLES = 30
IDLE_S = 10.0
DEADLINE_S = 30.0


def idle_cpu_pct(worker) -> float:
    time.sleep(1.0)  # the ready task's result written, the worker settled
    pids = process_tree(worker.pid) + database_backends()
    before, started = cpu_seconds(pids), time.perf_counter()
    time.sleep(IDLE_S)
    return 100 * (cpu_seconds(pids) - before) / (time.perf_counter() - started)


def time_to_candidate(client, raw: str, payload: dict, n: int) -> float | None:
    from learning.models import CandidateEvidence, ReflectionStatus, Trajectory

    run = copy.deepcopy(payload)
    run["external_id"] = f"ttc-{n}-{time.time_ns()}"
    started = time.perf_counter()
    response = client.post(
        "/api/v1/runs/",
        run,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert response.status_code == 201, response.content[:300]
    run_id = response.json()["id"]
    while time.perf_counter() - started < DEADLINE_S:
        status = (
            Trajectory.objects.filter(pk=run_id)
            .values_list("reflection_status", flat=True)
            .first()
        )
        if status == ReflectionStatus.REFLECTED:
            audited = list(
                CandidateEvidence.objects.filter(trajectory_id=run_id).values_list(
                    "candidate__audited_at", flat=True
                )
            )
            if not audited:
                return None  # no lesson from this run: not a sample
            if all(audited):
                return time.perf_counter() - started
        time.sleep(0.002)
    raise SystemExit(f"run {run_id}: no audited candidate after {DEADLINE_S} s")


def latencies(client, raw: str, failures: list[dict], namespace) -> list[float]:
    from learning.models import LearningCandidate

    rng = random.Random(5)
    samples, n = [], 0
    while len(samples) < SAMPLES and n < SAMPLES * 4:
        took = time_to_candidate(client, raw, failures[n % len(failures)], n)
        n += 1
        LearningCandidate.objects.filter(namespace=namespace).delete()
        if took is not None:
            samples.append(took)
        time.sleep(rng.uniform(0.05, 0.3))  # arrivals at any phase of the poll
    assert len(samples) >= SAMPLES // 2, f"only {len(samples)} runs made a candidate"
    return samples


def measure(poll: float, client, raw, failures, namespace) -> dict:
    worker = worker_start(Q_POLL=poll)
    try:
        worker_ready()
        idle = idle_cpu_pct(worker)
        samples = latencies(client, raw, failures, namespace)
    finally:
        process_stop(worker)
    return {
        "p50": round(percentile(samples, 0.5) * 1000),
        "p95": round(percentile(samples, 0.95) * 1000),
        "idle_cpu_pct": round(idle, 2),
        "samples": len(samples),
    }


def main() -> dict:
    import os

    os.environ["Q_SYNC"] = "false"
    django_setup()
    from django.conf import settings
    from django.test import Client
    from django_q.models import OrmQ

    from learning.models import ReflectionStatus, Trajectory
    from learning.services.runs import runs_ingest
    from learning.services.tokens import token_create

    assert not settings.Q_CLUSTER.get("sync"), "the benchmark needs the ORM broker"
    token, raw = token_create(
        name="bench-agent", namespace_slug="bench-latency", role="agent"
    )
    payloads = tau_bench_payloads()
    runs_ingest(namespace=token.namespace, agent="bench", runs=payloads)
    Trajectory.objects.update(reflection_status=ReflectionStatus.SKIPPED)
    OrmQ.objects.all().delete()  # the peers are there; nothing waits in the queue
    failures = [p for p in payloads if p.get("status") == "failure"]
    client = Client()
    default_poll = float(settings.Q_CLUSTER["poll"])
    now = measure(default_poll, client, raw, failures, token.namespace)
    before = measure(0.5, client, raw, failures, token.namespace)
    return {
        "ttc_p50_ms": now["p50"],
        "ttc_p95_ms": now["p95"],
        "ttc_samples": now["samples"],
        "ttc_poll_s": default_poll,
        "ttc_p50_ms_poll_0_5": before["p50"],
        "ttc_p95_ms_poll_0_5": before["p95"],
        "worker_idle_cpu_pct": now["idle_cpu_pct"],
        "worker_idle_cpu_pct_poll_0_5": before["idle_cpu_pct"],
    }


if __name__ == "__main__":
    report(main())
