"""The broker's results: internal tasks do not save their successes (no per-task
pruning either), failures are saved, other results are pruned on a schedule."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from django_q.models import Failure, Success, Task
from django_q.tasks import async_task

from learning.queue import task_send
from learning.services.schedules import SCHEDULES, task_results_prune

pytestmark = pytest.mark.django_db


def test_no_result_is_pruned_per_task():
    """Pruning per task locked every saved result on each task: it is off, and a
    schedule prunes instead."""
    assert settings.Q_CLUSTER["save_limit"] == 0
    assert SCHEDULES["flywheel-task-results-prune"][0] == (
        "learning.tasks.task_results_prune_task"
    )


def test_an_internal_task_saves_its_failure_not_its_success():
    """A successful internal task leaves no result row; a failing one keeps its error
    (the broker counts attempts there); an ordinary task still saves its success."""
    from django_q.brokers import get_broker
    from django_q.monitor import save_task

    task_send("math.floor", 2.5, task_name="internal-ok")
    assert not Task.objects.filter(name="internal-ok").exists()
    # In sync mode a failing task raises in the caller, so the failure's package
    # (as the worker hands it to the monitor) is saved directly.
    now = timezone.now()
    package = {
        "id": "e" * 32,
        "name": "internal-bad",
        "func": "math.floor",
        "args": ("x",),
        "kwargs": {},
        "started": now,
        "stopped": now,
        "result": "TypeError: must be real number, not str",
        "success": False,
        "save": False,
    }
    save_task(package, get_broker())
    assert Failure.objects.get(name="internal-bad").attempt_count == 1
    async_task("math.floor", 3.5, task_name="ordinary")
    assert Success.objects.get(name="ordinary").result == 3


def test_the_prune_keeps_the_newest_results():
    """The hourly prune deletes successes beyond the newest `keep` and no failure."""
    now = timezone.now()
    for n in range(7):
        Task.objects.create(
            id=f"{n:032x}",
            name=f"t{n}",
            func="math.floor",
            started=now - timedelta(minutes=10 - n),
            stopped=now - timedelta(minutes=10 - n),
            success=True,
        )
    Task.objects.create(
        id="f" * 32,
        name="failed",
        func="math.floor",
        started=now - timedelta(days=1),
        stopped=now - timedelta(days=1),
        success=False,
    )
    assert task_results_prune(keep=3) == 4
    assert sorted(Success.objects.values_list("name", flat=True)) == ["t4", "t5", "t6"]
    assert Failure.objects.filter(name="failed").exists()
    assert task_results_prune(keep=3) == 0
