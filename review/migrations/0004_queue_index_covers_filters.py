"""The queue index also carries the columns the queue's filters read (kind, severity,
confidence, playbook, agent, task type, user, source, audited), so a filtered page's
capped per-status counts and its row ids are index-only scans instead of a read of
the whole table (bench/bench_queue.py: 1,000,000 candidates, a filtered page's counts
317 → 27 ms). With agent, task type, user and source at their longest (516
characters, up to 2,064 bytes) an entry stays under B-tree's limit of 2,704 bytes."""

from django.db import migrations

from learning.migration_operations import PostgresOnlySQL

KEY = "(namespace_id, status, created_at DESC, id DESC)"


class Migration(migrations.Migration):
    dependencies = [
        ("review", "0003_reasons_tags_guidelines"),
    ]

    operations = [
        PostgresOnlySQL(
            sql=[
                "DROP INDEX IF EXISTS cand_queue_order",
                f"CREATE INDEX cand_queue_order ON learning_learningcandidate {KEY} "
                "INCLUDE (below_floor, kind, max_severity, confidence, playbook_id, "
                "agent, task_type, source, user_id, audited_at)",
            ],
            reverse_sql=[
                "DROP INDEX IF EXISTS cand_queue_order",
                f"CREATE INDEX cand_queue_order ON learning_learningcandidate {KEY} "
                "INCLUDE (below_floor)",
            ],
        ),
    ]
