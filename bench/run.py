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
    "bench_sqlite",
    "bench_queue",
    "bench_recall",
    "bench_recall_situation",
    "bench_audit",
    "bench_pipeline",
    "bench_latency",
    "bench_rollout",
]
DESCRIPTIONS = {
    "ingest_ratio_vs_copy_b1": "tau-bench runs posted one per request by 4 clients for 20 s (gunicorn, 2 workers), rows/s ÷ raw psycopg COPY of the same rows",
    "ingest_ratio_vs_copy_b20": "the same, batches of 20 runs",
    "ingest_ratio_vs_copy_b100": "the same, batches of 100 runs (goal ≥ 0.5)",
    "ingest_posts_per_s_b1": "single-run posts answered per second by the 2 web processes (FLYWHEEL_INGEST_RATE is chosen above it)",
    "ingest_p95_ms_b100": "request time p95 at batch 100, 4 clients, ms",
    "sqlite_ingest_p95_ms_b20": "SQLite (make run's default): request time p95, 4 clients posting batches of 20 while the worker reflects, ms (goal < 500)",
    "sqlite_ingest_errors": "SQLite: answers other than 201 during that (goal 0)",
    "sqlite_reflection_busy_vs_idle": "SQLite: runs reflected per second while the clients post ÷ alone (goal ≥ 0.5)",
    "queue_page_ms_1m": "review queue page, server time, 1,000,000 candidates, 1,000,000 steps, ms",
    "queue_page_ms_1m_filtered": "the same page filtered by kind, severity and confidence (goal < 50 ms)",
    "queue_page_ms_1m_all_statuses_page_100": "the unfiltered queue of every status, page 100, ms",
    "queue_queries": "SQL queries per queue page",
    "recall_ms_1k": "recall, server time, 1,000 strategies, ms",
    "recall_ms_10k": "recall, server time, 10,000 strategies, ms",
    "recall_ms_100k": "recall, server time, 100,000 strategies, ms (goal < 20)",
    "recall_growth_1k_10k": "recall time at 10,000 strategies ÷ at 1,000",
    "recall_growth_10k_100k": "recall time at 100,000 strategies ÷ at 10,000",
    "recall_situation_gap": "recall by situation: share of failing trials whose own task's recalled lessons tell the agent to use the tool they got wrong, minus the share for an unrelated task (goal ≥ 0.25); a lesson naming the tool to avoid it does not count",
    "recall_situation_gap_any_mention": "the same gap counting any mention of the tool, whatever the lesson says about it",
    "recall_own_task_hit": "recall by situation: own task's lessons tell the agent to use the tool",
    "recall_unrelated_hit": "recall by situation: an unrelated task's lessons tell it to use the tool",
    "audit_growth_100_10k": "audit time with 10,000 curated items ÷ with 100 (goal ≤ 1.5)",
    "pipeline_runs_per_s": "offline reflection + audits of the 200 demo runs, one worker, steady state (worker started, 1,000 saved results), runs/s (goal ≥ 100)",
    "pipeline_runs_per_s_10k": "the same against a playbook of 10,000 curated strategies and 10,000 memories, runs/s (goal ≥ 50)",
    "pipeline_10k_vs_demo": "pipeline rate against 10,000 curated items ÷ on the demo",
    "worker_rss_mb": "worker resident memory, peak during the pipeline benchmark, MB",
    "ttc_p50_ms": "a posted failure to its audited candidates, one worker, default ORM broker and poll, p50 ms (goal < 200)",
    "ttc_p95_ms": "the same, p95 ms (goal < 500)",
    "ttc_p50_ms_poll_0_5": "the same p50 at the previous poll of 0.5 s",
    "worker_idle_cpu_pct": "idle worker (its processes and database backends) at the default poll, % of one core",
    "worker_idle_cpu_pct_poll_0_5": "the same at a poll of 0.5 s",
    "rollout_wrong_max": "rollouts promoting a worse canary or rolling back one not worse, worst effect of 0/±5/±10/±20 points, 200 each (goal ≤ 0.05)",
    "rollout_wrong_boundary_max": "the same at the boundary effects 0 and -margin, 2,000 rollouts each",
    "rollout_decided_at_min_10pt": "±10-point rollouts decided at the policy's minimum, the worse of the two (goal ≥ 0.8)",
    "rollout_median_runs_10pt": "median runs (both cohorts) a ±10-point rollout needed",
    "rollout_api_agree": "API rollouts whose decision the in-process rule reproduces on the stored runs",
    "rollout_api_ms_per_session": "API path: ms per simulated session (recall, run post, gate look)",
    "console_key_to_next_row_ms_median": "reviewer console in Chromium, key press (a / c / Enter in the deny reason) to the next row highlighted, median over 50 actions (goal < 150 ms)",
    "console_key_to_next_row_ms_p95": "the same, 95th percentile",
    "console_key_to_answer_ms_median": "the same key press to the server's answer swapped into the acted row (its decided status shown), median",
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
