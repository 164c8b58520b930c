"""Ingest on SQLite (`make run`'s default) writes its rows with values adapted before
the transaction (learning.services.runs._SqliteInserts): what it stores must be what
the ORM's bulk_create stores. The suite runs on PostgreSQL, so this runs the same
batch through both paths in a subprocess on a SQLite file and compares the rows."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.slow

ROOT = Path(settings.BASE_DIR)

SCRIPT = r"""
import json, django
from datetime import datetime, timedelta, timezone
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0, interactive=False)
from django.db import connection
import learning.services.runs as runs_module
from learning.models import Step, Trajectory
from learning.services.tokens import namespace_get_or_create

at = lambda hours, second: datetime(
    2025, 1, 1, 10, 0, second, tzinfo=timezone(timedelta(hours=hours)))
step = lambda i, **kw: {"type": "tool_call", "description": f"step {i}", **kw}
batch = [
    {"external_id": "r1", "task_description": "Change the flight", "status": "failure",
     "success_score": 0.2, "metrics": {"turns": [1, None]},
     "started_at": at(2, 0),
     "steps": [step(0, tool="update_reservation", result={"ok": False, "why": [1]},
                    tokens=12, started_at=at(2, 1), ended_at=at(0, 2),
                    step_id="s-0"),
               step(1, description="key sk-ant-abcdefghijklmnopqrstuvwxyz0123456789"),
               step(2, result=None)]},
    {"external_id": "r2", "task_description": "Still going", "steps": [step(0)]},
    {"task_description": "No external id", "status": "success", "success_score": 1.0},
    {"external_id": "r1", "task_description": "A duplicate in the batch"},
]

def rows(slug):
    ns = namespace_get_or_create(slug=slug)
    first = runs_module.runs_ingest(namespace=ns, agent="bench", runs=batch)
    again = runs_module.runs_ingest(namespace=ns, agent="bench", runs=batch[:2])
    skip = {"id", "namespace_id", "created_at", "updated_at", "completed_at",
            "reflection_status", "reflection_reason"}
    runs = [
        {k: str(v) for k, v in r.items() if k not in skip}
        for r in Trajectory.objects.filter(namespace=ns)
        .order_by("external_id", "task_description").values()
    ]
    steps = [
        {k: str(v) for k, v in s.items() if k not in ("id", "trajectory_id")}
        for s in Step.objects.filter(trajectory__namespace=ns)
        .order_by("trajectory__external_id", "index").values()
    ]
    for s in steps:  # one timestamp per batch: equal within it
        s["created_at"] = s["created_at"] == str(first[0].steps[0]["created_at"])
    return {
        "created": [r.created for r in first], "again": [r.created for r in again],
        "same_run": first[3].run.pk == first[0].run.pk,
        "answered_pk": str(first[0].run.pk), "runs": runs, "steps": steps,
    }

prepared = rows("prepared")
runs_module._SqliteInserts = lambda *args, **kwargs: None  # the ORM's bulk_create
orm = rows("orm")
print(json.dumps({"vendor": connection.vendor, "prepared": prepared, "orm": orm}))
"""


def test_sqlite_ingest_stores_what_bulk_create_stores(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3",
        DJANGO_SETTINGS_MODULE="config.settings",
        Q_SYNC="false",
        Q_STATS_DIR=str(tmp_path / "q-stats"),
        FLYWHEEL_SUCCESS_SAMPLE_RATE="0",
    )
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data["vendor"] == "sqlite"
    prepared, orm = data["prepared"], data["orm"]
    assert prepared["created"] == [True, True, True, False]
    assert prepared["again"] == [False, False]
    assert prepared["same_run"]
    assert prepared["runs"] == orm["runs"]
    assert prepared["steps"] == orm["steps"]
    assert len(prepared["steps"]) == 4
    first = prepared["steps"][0]
    assert first["result"] == str({"ok": False, "why": [1]})
    assert first["started_at"] == "2025-01-01 08:00:01+00:00"
    assert first["client_id"] == "s-0" and first["tokens"] == "12"
    assert first["created_at"] is True
    assert "sk-ant-" not in prepared["steps"][1]["description"]
    assert prepared["steps"][2]["result"] == "None"  # SQL NULL, as bulk_create
    r1 = next(r for r in prepared["runs"] if r["external_id"] == "r1")
    assert r1["started_at"] == "2025-01-01 08:00:00+00:00"
    assert r1["metrics"] == str({"turns": [1, None]})
    assert r1["redacted"] == "True" and r1["redaction_count"] == "1"
