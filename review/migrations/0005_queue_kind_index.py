"""A second queue index, keyed by kind within each status: kind is the queue's first
filter (a reviewer takes the procedures, then the skill patches), and with it in the
key a kind-filtered tab's capped count and its page's ids read only that kind's
entries. Through `cand_queue_order`, where kind is only carried, a tab filtered to one
kind of six (plus a severity and a confidence) skipped ~9,000 entries per status to
find 101 (bench/bench_queue.py at 1,000,000 candidates: the count statement 17 → 2.7
ms). It carries the other filters' columns as `cand_queue_order` does, and stays
under B-tree's entry limit as that one does (tests/review/test_views_queue.py)."""

from django.db import migrations

from learning.migration_operations import PostgresOnlySQL


class Migration(migrations.Migration):
    dependencies = [
        ("review", "0004_queue_index_covers_filters"),
    ]

    operations = [
        PostgresOnlySQL(
            sql=[
                "CREATE INDEX IF NOT EXISTS cand_queue_kind ON learning_learningcandidate "
                "(namespace_id, status, kind, created_at DESC, id DESC) "
                "INCLUDE (below_floor, max_severity, confidence, playbook_id, agent, "
                "task_type, source, user_id, audited_at)",
            ],
            reverse_sql=["DROP INDEX IF EXISTS cand_queue_kind"],
        ),
    ]
