from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("learning", "0006_step_created_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="namespace",
            name="reflection_rules",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
