"""The audits' full-text and trigram indexes without GIN's pending list.

With `fastupdate` on (PostgreSQL's default), new rows go to an unsorted pending list
that every look-up scans in full until a vacuum merges it: after a bulk load of 10,000
strategies a one-word look-up read the whole 1.5 MB index (3 ms) and the audit's
look-ups grew with the playbook. Off, each insert updates the index itself (as recall's
`strategy_search_vector` already does), and what is pending now is merged at once."""

from django.db import migrations

from learning.migration_operations import PostgresOnlySQL

INDEXES = [
    "strategy_desc_trgm",
    "strategy_desc_fts",
    "memory_content_trgm",
    "memory_content_fts",
    "candidate_content_trgm",
    "candidate_content_fts",
]


class Migration(migrations.Migration):
    dependencies = [
        ("learning", "0008_step_client_id"),
    ]

    operations = [
        PostgresOnlySQL(
            sql=[
                *(
                    f"ALTER INDEX IF EXISTS {name} SET (fastupdate = off)"
                    for name in INDEXES
                ),
                (
                    "SELECT gin_clean_pending_list(c.oid) FROM pg_class c "
                    "WHERE c.relkind = 'i' AND c.relname = ANY(%s)",
                    [INDEXES],
                ),
            ],
            reverse_sql=[
                f"ALTER INDEX IF EXISTS {name} RESET (fastupdate)" for name in INDEXES
            ],
        ),
    ]
