"""The Django-Q2 schedules of the learning loop, created idempotently by name, and the
broker's housekeeping they run."""

from django.conf import settings
from django.db import transaction

# name: (func, schedule_type, minutes)
SCHEDULES = {
    "flywheel-reflection-sweeper": ("learning.tasks.reflection_sweep_task", "I", 2),
    "flywheel-batch-reflection": ("learning.tasks.batch_reflect_task", "I", 30),
    "flywheel-relearning": ("learning.tasks.relearning_task", "I", 10),
    "flywheel-playbooks-curate": ("playbooks.tasks.playbooks_curate", "H", None),
    "flywheel-memories-consolidate": (
        "playbooks.tasks.memories_consolidate",
        "D",
        None,
    ),
    # The verdict on running rollouts: a playbook without one costs nothing.
    "flywheel-quality-gate": ("playbooks.tasks.quality_gate_evaluate", "I", 1),
    "flywheel-task-results-prune": (
        "learning.tasks.task_results_prune_task",
        "H",
        None,
    ),
}


@transaction.atomic
def schedules_setup() -> dict[str, str]:
    """Create or update every schedule (update_or_create by name); duplicates of a name
    are removed. Returns {name: "created" | "updated"}."""
    return {name: schedule_ensure(name=name) for name in SCHEDULES}


def schedule_ensure(*, name: str) -> str:
    """Create or update one schedule of SCHEDULES by name: "created" | "updated"."""
    from django_q.models import Schedule

    func, schedule_type, minutes = SCHEDULES[name]
    extra = Schedule.objects.filter(name=name).order_by("id")[1:]
    Schedule.objects.filter(pk__in=[s.pk for s in extra]).delete()
    _obj, created = Schedule.objects.update_or_create(
        name=name,
        defaults={
            "func": func,
            "schedule_type": schedule_type,
            "minutes": minutes,
            "repeats": -1,
        },
    )
    return "created" if created else "updated"


def task_results_prune(*, keep: int | None = None) -> int:
    """Delete saved successful task results beyond the newest `keep`
    (FLYWHEEL_TASK_RESULTS_KEEP): once an hour in one statement, instead of Django-Q2's
    `save_limit`, which locked every saved result on each task. Returns the count."""
    from django_q.models import Success

    keep = settings.FLYWHEEL_TASK_RESULTS_KEEP if keep is None else keep
    older = Success.objects.order_by("-stopped", "-id").values("id")[keep:]
    deleted, _ = Success.objects.filter(id__in=older).delete()
    return deleted
