"""The review queue's index on PostgreSQL: (namespace, status, created_at DESC, id DESC)
covering below_floor, so the queue page reads its 50 rows in order and the capped
per-status counts are index-only scans (bench/bench_queue.py: 100,000 candidates)."""

from django.db import migrations

from learning.migration_operations import PostgresOnlySQL


class Migration(migrations.Migration):
    dependencies = [
        ("review", "0001_initial"),
        ("learning", "0003_search_indexes"),
    ]

    operations = [
        PostgresOnlySQL(
            sql=[
                "CREATE INDEX IF NOT EXISTS cand_queue_order ON learning_learningcandidate "
                "(namespace_id, status, created_at DESC, id DESC) INCLUDE (below_floor)",
            ],
            reverse_sql=["DROP INDEX IF EXISTS cand_queue_order"],
        ),
    ]
