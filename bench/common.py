"""Shared helpers for the benchmarks: Django setup against DATABASE_URL, timing, and
the one-line result protocol (`RESULT {json}` as the last line of stdout)."""

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# Words for synthetic playbook entries (bench_audit, bench_recall): realistic enough
# that full-text and trigram matching have real work to do.
VERBS = """confirm check verify ask offer escalate record cancel refund rebook quote
retry cache log validate compare notify document summarise archive page restart drain
snapshot rotate tag export load dedupe partition backfill review approve schedule""".split()
NOUNS = """reservation cabin fare voucher baggage lounge upgrade passenger ticket invoice
order shipment address warranty subscription account password invoice payment card
coupon seat itinerary visa transfer hotel taxi meal infant wheelchair pet loyalty tier
membership refund chargeback dispute webhook timeout queue worker node volume disk
certificate backup replica index partition table schema column export report dashboard
metric alert pager incident deploy release branch migration fixture cache session token
region bucket pipeline batch stream topic consumer producer cluster namespace secret
quota limit budget forecast ledger tax currency exchange supplier catalog price discount
return exchange complaint feedback survey callback transcript language channel""".split()
WHENS = """when the customer is upset|before the deadline|after the first failure|during
peak hours|for premium members|on international routes|in the nightly batch|for new
accounts|when the queue backs up|before closing the ticket|after the migration|for
enterprise tenants|during the holiday season|on the first contact|for repeat
issues""".replace("\n", " ").split("|")


def django_setup(settings: str = "config.settings", *, sqlite: bool = False) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings)
    if not sqlite and "postgres" not in os.environ.get("DATABASE_URL", ""):
        sys.exit("benchmarks run on PostgreSQL: set DATABASE_URL (make bench does)")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - start, value


def median_ms(fn, repeat: int = 7, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def report(results: dict) -> None:
    print("RESULT " + json.dumps(results), flush=True)


# --- processes: the worker and the web server, as users run them ----------------------

TAU_FIXTURE = ROOT / "fixtures" / "tau-bench" / "gpt-4o-airline.json.gz"


def tau_bench_payloads() -> list[dict]:
    """The 200 tau-bench airline runs as the JSON a client posts to /api/v1/runs/
    (about 18 KB and 20 steps each): realistic sizes for ingest and reflection."""
    import gzip

    from learning.importers import payload_convert

    records = json.loads(gzip.open(TAU_FIXTURE).read())
    return [
        payload_convert(r, fmt="tau-bench", domain=None, name=f"record {n}", status="")
        for n, r in enumerate(records, start=1)
    ]


def process_tree(pid: int) -> list[int]:
    children: dict = {}
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


def cpu_seconds(pids) -> float:
    """User + system CPU time of these processes so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def database_backends() -> list[int]:
    """PostgreSQL backend pids connected to this benchmark's database, except ours."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        return [row[0] for row in cursor.fetchall()]


def worker_start(**env_extra) -> subprocess.Popen:
    """One `qcluster` on the ORM broker (Q_WORKERS=1 unless given)."""
    env = dict(
        os.environ,
        Q_WORKERS="1",
        Q_SYNC="false",
        DJANGO_SETTINGS_MODULE=os.environ.get(
            "DJANGO_SETTINGS_MODULE", "config.settings"
        ),
        **{k: str(v) for k, v in env_extra.items()},
    )
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def worker_ready(timeout: float = 60) -> None:
    """Wait until the worker has run one task end to end (started, polling, saving):
    timers that start after this exclude the worker's start-up."""
    from django_q.models import Success
    from django_q.tasks import async_task

    task_id = async_task("math.floor", 1.5, task_name=f"ready-{time.time_ns()}")
    deadline = time.perf_counter() + timeout
    while not Success.objects.filter(id=task_id).exists():
        if time.perf_counter() > deadline:
            raise SystemExit("the worker did not start")
        time.sleep(0.05)


def process_stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_start(workers: int = 2, **env_extra) -> tuple[subprocess.Popen, str]:
    """gunicorn on loopback, as in production; returns (process, base URL) once
    /healthz answers."""
    port = free_port()
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE=os.environ.get(
            "DJANGO_SETTINGS_MODULE", "config.settings"
        ),
        Q_SYNC="false",
        **{k: str(v) for k, v in env_extra.items()},
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "-w",
            str(workers),
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
    for _ in range(150):
        try:
            urllib.request.urlopen(base + "/healthz", timeout=2)
            return server, base
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.2)
    process_stop(server)
    raise SystemExit("the web server did not start")


def runs_post(base: str, token: str, runs: list[dict]) -> int:
    """POST one batch (or, for one run, the run itself) to /api/v1/runs/."""
    body = json.dumps(runs[0] if len(runs) == 1 else {"runs": runs}).encode()
    request = urllib.request.Request(
        base + "/api/v1/runs/",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)
