"""Trigram and full-text indexes for audits and recall, on PostgreSQL only (SQLite
uses the Python fallbacks)."""

from django.db import migrations

from learning.migration_operations import PostgresOnlySQL


class Migration(migrations.Migration):
    dependencies = [
        ("learning", "0002_initial"),
        ("playbooks", "0001_initial"),
    ]

    operations = [
        PostgresOnlySQL(
            sql=[
                "CREATE EXTENSION IF NOT EXISTS pg_trgm",
                "CREATE INDEX IF NOT EXISTS strategy_desc_trgm ON playbooks_strategy "
                "USING gin (description gin_trgm_ops)",
                "CREATE INDEX IF NOT EXISTS strategy_desc_fts ON playbooks_strategy "
                "USING gin (to_tsvector('english', description || ' ' || context))",
                "CREATE INDEX IF NOT EXISTS memory_content_trgm ON playbooks_memory "
                "USING gin (content gin_trgm_ops)",
                "CREATE INDEX IF NOT EXISTS memory_content_fts ON playbooks_memory "
                "USING gin (to_tsvector('english', content))",
                "CREATE INDEX IF NOT EXISTS candidate_content_trgm ON learning_learningcandidate "
                "USING gin (content gin_trgm_ops)",
                "CREATE INDEX IF NOT EXISTS candidate_content_fts ON learning_learningcandidate "
                "USING gin (to_tsvector('english', content))",
            ],
            reverse_sql=[
                "DROP INDEX IF EXISTS strategy_desc_trgm",
                "DROP INDEX IF EXISTS strategy_desc_fts",
                "DROP INDEX IF EXISTS memory_content_trgm",
                "DROP INDEX IF EXISTS memory_content_fts",
                "DROP INDEX IF EXISTS candidate_content_trgm",
                "DROP INDEX IF EXISTS candidate_content_fts",
            ],
        ),
    ]
