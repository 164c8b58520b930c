"""The background pipeline's throughput: the 200 tau-bench airline runs are imported
with the ORM broker (reflection tasks queue up), then ONE Django-Q2 worker process
(`qcluster`, Q_WORKERS=1) reflects on them offline and audits every candidate. Prints
`pipeline_runs_per_s` (reflected runs ÷ wall time from worker start to the last audit)
and `worker_rss_mb` (peak resident memory of the worker processes)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, django_setup, report  # noqa: E402

FIXTURE = ROOT / "fixtures" / "tau-bench" / "gpt-4o-airline.json.gz"
DEADLINE_S = 600


def process_tree(pid: int) -> list[int]:
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, stack = [], [pid]
    while stack:
        current = stack.pop()
        tree.append(current)
        stack.extend(children.get(current, []))
    return tree


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> dict:
    os.environ["Q_SYNC"] = "false"
    django_setup()
    from django.conf import settings

    assert not settings.Q_CLUSTER.get("sync"), "the benchmark needs the ORM broker"
    from learning.importers import runs_import
    from learning.models import LearningCandidate, ReflectionStatus, Trajectory
    from learning.services.tokens import namespace_get_or_create

    namespace = namespace_get_or_create(slug="bench-pipeline")
    # Reflect on every run (successes too): the import below decides in this process.
    settings.FLYWHEEL_SUCCESS_SAMPLE_RATE = 1.0
    runs_import(path=FIXTURE, fmt="tau-bench", namespace=namespace, agent="bench")
    runs = Trajectory.objects.filter(namespace=namespace)
    pending = runs.filter(reflection_status=ReflectionStatus.PENDING).count()
    assert pending, "no run was queued for reflection"

    env = dict(
        os.environ,
        Q_WORKERS="1",
        Q_SYNC="false",
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    start = time.perf_counter()
    peak = 0.0
    try:
        while time.perf_counter() - start < DEADLINE_S:
            peak = max(peak, max(rss_mb(pid) for pid in process_tree(worker.pid)))
            left = runs.filter(reflection_status=ReflectionStatus.PENDING).count()
            unaudited = LearningCandidate.objects.filter(
                namespace=namespace, audited_at__isnull=True
            ).count()
            if left == 0 and unaudited == 0:
                break
            time.sleep(0.2)
        elapsed = time.perf_counter() - start
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
    reflected = runs.filter(reflection_status=ReflectionStatus.REFLECTED).count()
    assert reflected >= pending * 0.95, f"only {reflected} of {pending} runs reflected"
    candidates = LearningCandidate.objects.filter(namespace=namespace).count()
    return {
        "pipeline_runs_per_s": round(reflected / elapsed, 2),
        "worker_rss_mb": round(peak, 1),
        "pipeline_candidates": candidates,
    }


if __name__ == "__main__":
    report(main())
