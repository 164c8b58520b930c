"""The background pipeline's steady-state throughput with ONE Django-Q2 worker
(`qcluster`, Q_WORKERS=1, the ORM broker): offline reflection of every run and the
audit of every candidate, on the demo and against a playbook of 10,000 curated items.

The 200 tau-bench airline runs are stored twice, in two namespaces: `bench-pipeline`
(an empty playbook, the demo) and `bench-pipeline-10k`, whose airline playbook holds
10,000 curated strategies and the namespace 10,000 memories. The task table already
holds 1,000 saved results. Nothing is queued while the runs are stored; the worker is
started and has run one task end to end before any timer starts. Then each
namespace's pending runs are queued as ingest queues them (one set task per batch of
50) and timed until the last run is reflected and the last candidate audited (a fresh
worker for each namespace: both hold the same texts).
Prints `pipeline_runs_per_s` (demo), `pipeline_runs_per_s_10k`, their ratio and
`worker_rss_mb` (peak resident memory of the worker's processes)."""

import os
import random
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_audit import strategy_text  # noqa: E402
from common import (  # noqa: E402
    django_setup,
    process_stop,
    process_tree,
    report,
    rss_mb,
    tau_bench_payloads,
    worker_ready,
    worker_start,
)

DEADLINE_S = 900
CURATED = 10_000
RESULTS = 1_000
FANOUT = 50  # runs per fan-out task, as an import of batches of 50 queues them


def task_table_fill(count: int) -> None:
    from django.utils import timezone
    from django_q.models import Task

    now = timezone.now()
    Task.objects.bulk_create(
        Task(
            id=uuid.uuid4().hex,
            name=f"earlier-{n}",
            func="learning.tasks.reflection_sweep_task",
            started=now,
            stopped=now,
            success=True,
            result={"decided": 0, "requeued": 0, "failed": 0},
        )
        for n in range(count)
    )


def curated_fill(namespace, size: int) -> None:
    from django.db import connection

    from playbooks.models import Memory, Strategy
    from playbooks.services import playbook_for_task_type

    rng = random.Random(3)
    playbook = playbook_for_task_type(namespace=namespace, task_type="airline")
    Strategy.objects.bulk_create(
        (
            Strategy(
                playbook=playbook,
                type="harmful" if n % 5 == 0 else "helpful",
                description=strategy_text(rng, n),
                position=n,
            )
            for n in range(size)
        ),
        batch_size=2000,
    )
    Memory.objects.bulk_create(
        (
            Memory(
                namespace=namespace, kind="durable_fact", content=strategy_text(rng, n)
            )
            for n in range(size)
        ),
        batch_size=2000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE playbooks_strategy")
        cursor.execute("ANALYZE playbooks_memory")


def pipeline_time(namespace, worker) -> tuple[float, int, float]:
    """(seconds, runs reflected, peak RSS) from queueing the namespace's pending runs
    to the last audit."""
    from learning.models import LearningCandidate, ReflectionStatus, Trajectory
    from learning.queue import task_send
    from learning.services.reflection import FANOUT_TASK

    runs = Trajectory.objects.filter(namespace=namespace)
    pending = [
        str(pk)
        for pk in runs.filter(reflection_status=ReflectionStatus.PENDING).values_list(
            "pk", flat=True
        )
    ]
    assert pending, "no run was queued for reflection"
    start = time.perf_counter()
    for i in range(0, len(pending), FANOUT):
        task_send(FANOUT_TASK, pending[i : i + FANOUT], group="reflection")
    peak = 0.0
    while time.perf_counter() - start < DEADLINE_S:
        peak = max(peak, max(rss_mb(pid) for pid in process_tree(worker.pid)))
        left = runs.filter(reflection_status=ReflectionStatus.PENDING).exists()
        unaudited = LearningCandidate.objects.filter(
            namespace=namespace, audited_at__isnull=True
        ).exists()
        if not left and not unaudited:
            break
        time.sleep(0.1)
    elapsed = time.perf_counter() - start
    reflected = runs.filter(reflection_status=ReflectionStatus.REFLECTED).count()
    assert reflected >= len(pending) * 0.95, (
        f"only {reflected} of {len(pending)} runs reflected"
    )
    return elapsed, reflected, peak


def main() -> dict:
    os.environ["Q_SYNC"] = "false"
    django_setup()
    from django.conf import settings
    from django_q.models import OrmQ

    from learning.models import LearningCandidate
    from learning.services.runs import runs_ingest
    from learning.services.tokens import namespace_get_or_create

    assert not settings.Q_CLUSTER.get("sync"), "the benchmark needs the ORM broker"
    # Reflect on every run (successes too): ingest decides in this process.
    settings.FLYWHEEL_SUCCESS_SAMPLE_RATE = 1.0
    payloads = tau_bench_payloads()
    demo = namespace_get_or_create(slug="bench-pipeline")
    mature = namespace_get_or_create(slug="bench-pipeline-10k")
    curated_fill(mature, CURATED)
    for namespace in (demo, mature):
        for i in range(0, len(payloads), 50):
            runs_ingest(namespace=namespace, agent="bench", runs=payloads[i : i + 50])
    OrmQ.objects.all().delete()  # queued below, once the worker runs
    task_table_fill(RESULTS)

    timed = {}
    for namespace in (demo, mature):
        # A fresh worker per namespace: the runs' texts are the same in both, and a
        # worker that already analysed them would flatter the second.
        worker = worker_start()
        try:
            worker_ready()
            timed[namespace.slug] = pipeline_time(namespace, worker)
        finally:
            process_stop(worker)
    demo_s, demo_runs, peak_a = timed[demo.slug]
    mature_s, mature_runs, peak_b = timed[mature.slug]
    demo_rate, mature_rate = demo_runs / demo_s, mature_runs / mature_s
    return {
        "pipeline_runs_per_s": round(demo_rate, 2),
        "pipeline_runs_per_s_10k": round(mature_rate, 2),
        "pipeline_10k_vs_demo": round(mature_rate / demo_rate, 2),
        "pipeline_candidates": LearningCandidate.objects.filter(namespace=demo).count(),
        "worker_rss_mb": round(max(peak_a, peak_b), 1),
    }


if __name__ == "__main__":
    report(main())
