"""A stored full-text vector for recall on PostgreSQL: ranking matches with
ts_rank_cd on a stored tsvector instead of recomputing to_tsvector per row keeps recall
flat as playbooks grow. SQLite gets nothing (recall uses its Python fallback there);
the column is generated, so no model field is needed."""

from django.db import migrations, models

from learning.migration_operations import PostgresOnlySQL


class Migration(migrations.Migration):
    dependencies = [
        ("playbooks", "0002_quality_and_recall_links"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="strategy",
            index=models.Index(
                condition=models.Q(("active", True)),
                fields=["playbook", "-confidence", "-helpful_count", "position"],
                name="strategy_fill",
            ),
        ),
        PostgresOnlySQL(
            sql=[
                "ALTER TABLE playbooks_strategy ADD COLUMN IF NOT EXISTS search_vector "
                "tsvector GENERATED ALWAYS AS "
                "(to_tsvector('english', description || ' ' || context)) STORED",
                "CREATE INDEX IF NOT EXISTS strategy_search_vector ON playbooks_strategy "
                "USING gin (search_vector) WITH (fastupdate = off)",
            ],
            reverse_sql=[
                "DROP INDEX IF EXISTS strategy_search_vector",
                "ALTER TABLE playbooks_strategy DROP COLUMN IF EXISTS search_vector",
            ],
        ),
    ]
