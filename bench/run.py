"""`make bench`: runs every bench/bench_*.py in its own fresh PostgreSQL database,
collects the `RESULT {json}` line each prints, writes bench/results.json and prints
the table README carries. Every figure is a ratio or a time measured in one run."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

HERE = Path(__file__).resolve().parent
ORDER = [
    "bench_ingest",
    "bench_queue",
    "bench_recall",
    "bench_audit",
    "bench_pipeline",
    "bench_rollout",
]
DESCRIPTIONS = {
    "ingest_ratio_vs_copy": "runs of 25 steps via POST /api/v1/runs/ (gunicorn, 2 workers) ÷ raw psycopg COPY of the same rows (goal ≥ 0.25)",
    "queue_page_ms_100k": "review queue page, server time, 100,000 candidates, 1,000,000 steps (goal < 50 ms)",
    "queue_queries": "SQL queries per queue page",
    "recall_ms_10k": "recall, server time, 10,000 strategies (goal well under 20 ms)",
    "recall_growth_1k_10k": "recall time at 10,000 strategies ÷ at 1,000",
    "audit_growth_100_10k": "audit time with 10,000 curated items ÷ with 100",
    "pipeline_runs_per_s": "offline reflection + audits, one worker, runs per second",
    "worker_rss_mb": "worker resident memory after the pipeline benchmark, MB",
    "rollout_wrong_max": "rollouts promoting a worse canary or rolling back one not worse, worst effect of 0/±5/±10/±20 points, 200 each (goal ≤ 0.05)",
    "rollout_wrong_boundary_max": "the same at the boundary effects 0 and -margin, 2,000 rollouts each",
    "rollout_decided_at_min_10pt": "±10-point rollouts decided at the policy's minimum, the worse of the two (goal ≥ 0.8)",
    "rollout_median_runs_10pt": "median runs (both cohorts) a ±10-point rollout needed",
    "rollout_api_agree": "API rollouts whose decision the in-process rule reproduces on the stored runs",
    "rollout_api_ms_per_session": "API path: ms per simulated session (recall, run post, gate look)",
    "console_key_to_next_row_ms_median": "reviewer console in Chromium, key press (a / c / Enter in the deny reason) to the next row highlighted, median over 50 actions (goal < 150 ms)",
    "console_key_to_next_row_ms_p95": "the same, 95th percentile",
    "console_action_server_ms_median": "the same actions' POST as the browser timed it (request start to response end), median",
    "console_actions": "console actions measured",
}


def database_url(base: str, name: str) -> str:
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path="/" + name))


def fresh_database(base: str, name: str) -> str:
    with psycopg.connect(database_url(base, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return database_url(base, name)


def run_one(script: Path, base_url: str) -> dict:
    env = dict(os.environ, DATABASE_URL=fresh_database(base_url, script.stem))
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    elapsed = time.perf_counter() - started
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        print(
            f"  {script.stem} FAILED ({proc.returncode}):\n{proc.stderr[-1500:]}",
            file=sys.stderr,
        )
        return {}
    print(f"  {script.stem}: {elapsed:.0f} s", file=sys.stderr)
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> int:
    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith("postgres"):
        sys.exit(
            "make bench runs on PostgreSQL (scripts/with_postgres.sh sets DATABASE_URL)"
        )
    only = set(sys.argv[1:])
    scripts = sorted(
        HERE.glob("bench_*.py"), key=lambda p: (ORDER + [p.stem]).index(p.stem)
    )
    results: dict = {}
    for script in scripts:
        if only and script.stem not in only:
            continue
        results.update(run_one(script, base_url))
    out = HERE / "results.json"
    previous = json.loads(out.read_text()) if out.exists() and only else {}
    out.write_text(json.dumps({**previous, **results}, indent=2, sort_keys=True) + "\n")
    print("\n| figure | value | what |\n| --- | --- | --- |")
    for key, value in {**previous, **results}.items():
        print(f"| `{key}` | {value} | {DESCRIPTIONS.get(key, '')} |")
    missing = [k for k in DESCRIPTIONS if k not in {**previous, **results}]
    return 1 if missing and not only else 0


if __name__ == "__main__":
    sys.exit(main())
