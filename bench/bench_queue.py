"""Review queue at scale: bulk-loads 1,000,000 learning candidates (with evidence) and
1,000,000 run steps with COPY, then measures the server time of the queue page through
the real view (Django test Client, session login, templates) as the median of several
requests, and the SQL queries per page. Prints `queue_page_ms_1m` and `queue_queries`
(plus the filtered and deep-page variants). BENCH_QUEUE_CANDIDATES sets another size
(the figures are then named after it, e.g. `queue_page_ms_100k`)."""

import io
import os
import random
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import django_setup, median_ms, report  # noqa: E402

CANDIDATES = int(os.environ.get("BENCH_QUEUE_CANDIDATES", 1_000_000))
RUNS = 10_000
STEPS_PER_RUN = 100
KINDS = [
    "strategy_helpful",
    "strategy_harmful",
    "preference",
    "durable_fact",
    "procedure",
    "patch_skill",
]
# Most of a mature queue is decided; a realistic share is still pending.
STATUSES = (
    ["pending"] * 25
    + ["applied"] * 40
    + ["denied"] * 25
    + ["conflicted"] * 5
    + ["superseded"] * 3
    + ["apply_failed"] * 2
)
SEVERITIES = [""] * 70 + ["info"] * 15 + ["warn"] * 12 + ["block"] * 3
WORDS = """confirm check verify ask offer escalate record cancel refund rebook quote retry
reservation cabin fare voucher baggage lounge upgrade passenger ticket invoice order seat
itinerary customer agent policy before after when always never first""".split()


def copy_rows(cursor, table: str, columns: list[str], rows) -> None:
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def load(rng: random.Random):
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from learning.models import Membership, Namespace
    from playbooks.models import Playbook

    namespace = Namespace.objects.create(slug="bench")
    Namespace.objects.create(slug="other")  # a namespace the reviewer cannot see
    user = get_user_model().objects.create_user("bench-reviewer", password="x")
    Membership.objects.create(user=user, namespace=namespace, role="reviewer")
    playbooks = [
        Playbook.objects.create(
            namespace=namespace, slug=f"pb-{i}", name=f"Playbook {i}"
        )
        for i in range(10)
    ]
    now = timezone.now()
    run_ids = [uuid.uuid4() for _ in range(RUNS)]
    connection.ensure_connection()
    raw = connection.connection
    with raw.cursor() as cur:
        copy_rows(
            cur,
            "learning_trajectory",
            [
                "id",
                "namespace_id",
                "external_id",
                "agent",
                "user_id",
                "session_id",
                "task_description",
                "task_type",
                "status",
                "success_score",
                "effective_score",
                "error_message",
                "metrics",
                "playbook_versions",
                "needs_relearning",
                "relearning_priority",
                "redacted",
                "redaction_count",
                "reflection_status",
                "reflection_reason",
                "reflection_error",
                "reflection_attempts",
                "created_at",
                "updated_at",
            ],
            (
                (
                    rid,
                    namespace.pk,
                    f"bench-{n}",
                    f"agent-{n % 7}",
                    "",
                    "",
                    f"Task {n}: change reservation R{n:05d}",
                    f"airline.t{n % 12}",
                    "success" if n % 3 else "failure",
                    1.0 if n % 3 else 0.0,
                    1.0 if n % 3 else 0.0,
                    "",
                    "{}",
                    "[]",
                    False,
                    0,
                    False,
                    0,
                    "reflected",
                    "",
                    "",
                    0,
                    now - timedelta(minutes=n),
                    now,
                )
                for n, rid in enumerate(run_ids)
            ),
        )
        step_types = ["message", "tool_call", "observation", "decision", "action"]
        stamp = now.isoformat()
        # 1,000,000 rows: write COPY text in large chunks rather than row by row.
        with cur.copy(
            "COPY learning_step (trajectory_id, index, type, description, tool, "
            "created_at) FROM STDIN"
        ) as copy:
            for start_run in range(0, RUNS, 1000):
                buf = io.StringIO()
                for n in range(start_run, min(start_run + 1000, RUNS)):
                    rid = run_ids[n]
                    for i in range(STEPS_PER_RUN):
                        tool = "get_reservation_details" if i % 5 == 1 else ""
                        buf.write(
                            f"{rid}\t{i}\t{step_types[i % 5]}\tstep {i} of run {n}: "
                            f"get_reservation_details\t{tool}\t{stamp}\n"
                        )
                copy.write(buf.getvalue())
        # GIN indexes take 1M rows far faster built once than row by row (a bulk load
        # drops and rebuilds them): keep their definitions, drop, COPY, recreate.
        cur.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = "
            "'learning_learningcandidate' AND indexdef LIKE '%USING gin%'"
        )
        gin_indexes = cur.fetchall()
        for name, _ in gin_indexes:
            cur.execute(f'DROP INDEX "{name}"')
        copy_rows(
            cur,
            "learning_learningcandidate",
            [
                "namespace_id",
                "kind",
                "status",
                "content",
                "rationale",
                "confidence",
                "playbook_id",
                "memory_scope",
                "user_id",
                "entity",
                "task_type",
                "agent",
                "patch",
                "base_hash",
                "source",
                "proposed_by",
                "evidence_count",
                "fingerprint",
                "below_floor",
                "max_severity",
                "override_by",
                "decided_by",
                "decision_note",
                "apply_error",
                "auto_applied",
                "polarity",
                "lesson_when",
                "directive",
                "why",
                "provenance",
                "shape_classified",
                "created_at",
                "updated_at",
            ],
            (
                (
                    namespace.pk,
                    rng.choice(KINDS),
                    status,
                    " ".join(rng.choices(WORDS, k=14)) + f" (#{n})",
                    "Seen in failed runs.",
                    round(rng.uniform(0.2, 0.99), 2),
                    rng.choice(playbooks).pk,
                    "",
                    "",
                    "",
                    f"airline.t{n % 12}",
                    f"agent-{n % 7}",
                    "",
                    "",
                    "reflection",
                    "",
                    1,
                    f"{n:064x}",
                    rng.random() < 0.05,
                    rng.choice(SEVERITIES),
                    "",
                    "" if status == "pending" else "someone",
                    "",
                    "",
                    False,
                    "",
                    "",
                    "",
                    "",
                    "",
                    False,
                    now - timedelta(seconds=n * 30),
                    now,
                )
                for n, status in ((n, rng.choice(STATUSES)) for n in range(CANDIDATES))
            ),
        )
        for _, definition in gin_indexes:
            cur.execute(definition)
        cur.execute("SELECT min(id) FROM learning_learningcandidate")
        first_id = cur.fetchone()[0]
        copy_rows(
            cur,
            "learning_candidateevidence",
            [
                "candidate_id",
                "trajectory_id",
                "step_indexes",
                "created_at",
            ],
            (
                (first_id + n, run_ids[n % RUNS], "[1, 3]", now)
                for n in range(CANDIDATES)
            ),
        )
    raw.commit() if not raw.autocommit else None
    # A bulk load leaves the visibility map unset until autovacuum passes; a queue
    # that has been live for a while has been vacuumed, so measure that state.
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE learning_learningcandidate")
        cur.execute("ANALYZE")
    return user


def size_label(n: int) -> str:
    """1_000_000 → "1m", 100_000 → "100k"."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def measure(user) -> dict:
    """The queue page's figures for `user`, a reviewer of the loaded namespace."""
    from django.db import connection
    from django.test import Client

    size = size_label(CANDIDATES)
    client = Client()
    client.force_login(user)

    def page(url):
        def get():
            response = client.get(url)
            assert response.status_code == 200, response.status_code
            return response

        return get

    queries = []

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        response = page("/")()
    assert response.content.count(b'<tr id="cand-') == 50
    results = {
        f"queue_page_ms_{size}": round(median_ms(page("/"), repeat=15, warmup=3), 1),
        "queue_queries": len(queries),
        f"queue_page_ms_{size}_filtered": round(
            median_ms(
                page("/?kind=procedure&severity=warn&min_confidence=0.5"), repeat=9
            ),
            1,
        ),
        f"queue_page_ms_{size}_all_statuses_page_100": round(
            median_ms(page("/?status=all&page=100"), repeat=9), 1
        ),
    }
    print("queries on the queue page:", file=sys.stderr)
    for sql in queries:
        print(f"  {sql[:150]}", file=sys.stderr)
    return results


def main() -> None:
    django_setup()
    rng = random.Random(7)
    start = time.perf_counter()
    user = load(rng)
    load_s = time.perf_counter() - start
    print(
        f"loaded {CANDIDATES} candidates and {RUNS * STEPS_PER_RUN} steps in "
        f"{load_s:.1f} s",
        file=sys.stderr,
    )
    report({**measure(user), "queue_load_s": round(load_s, 1)})


if __name__ == "__main__":
    main()
