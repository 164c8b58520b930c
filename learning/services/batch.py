"""Batch reflection: patterns common to many runs of one task type, with frequencies."""

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Q

from learning.models import Namespace, Reflection, RunStatus, Trajectory
from learning.queue import task_send
from learning.reflectors import reflector_get
from learning.services.reflection import (
    lessons_to_candidates,
    reflection_fields,
    run_views,
)

BATCH_LIMIT = 200  # newest finished runs of the task type looked at


def batch_min_runs() -> int:
    return int(getattr(settings, "FLYWHEEL_BATCH_MIN_RUNS", 5))


def batch_reflect(
    *, namespace_id: int, task_type: str, limit: int = BATCH_LIMIT
) -> Reflection | None:
    """Reflect over the newest finished runs of a task type as a whole: lessons found in
    at least two runs become candidates whose evidence is every run that showed them
    (merged into equal pending candidates). Returns the batch Reflection."""
    namespace = Namespace.objects.get(pk=namespace_id)
    runs = list(
        Trajectory.objects.filter(namespace=namespace, task_type=task_type)
        .exclude(status=RunStatus.RUNNING)
        .order_by("-created_at")[:limit]
    )
    if len(runs) < 2:
        return None
    views = run_views(runs)
    for view in views:  # the namespace's rules apply to every run of the batch
        view.rules = namespace.reflection_rules or {}
    result = reflector_get().reflect_batch(runs=views)
    with transaction.atomic():
        fields = reflection_fields(result)
        # A batch's observation is the batch itself (its patterns and frequencies).
        fields["observations"] = [
            {
                "description": f"{len(runs)} runs reflected as a batch",
                "evidence": result.summary,
                "confidence": 1.0,
            }
        ]
        reflection = Reflection.objects.create(
            namespace=namespace, task_type=task_type, is_batch=True, **fields
        )
        reflection.batch_runs.set(runs)
        lessons_to_candidates(
            namespace=namespace,
            lessons=result.lessons,
            reflection=reflection,
            task_type=task_type,
            source="batch",
        )
    return reflection


def batch_reflect_due() -> dict:
    """Every (namespace, task type) with at least FLYWHEEL_BATCH_MIN_RUNS finished runs
    newer than its last batch reflection gets one, each as its own task (a Claude
    Message Batch may take most of a task's time budget)."""
    last = {
        (row["namespace_id"], row["task_type"]): row["last"]
        for row in Reflection.objects.filter(is_batch=True)
        .values("namespace_id", "task_type")
        .annotate(last=Max("created_at"))
    }
    groups = (
        Trajectory.objects.exclude(status=RunStatus.RUNNING)
        .values("namespace_id", "task_type")
        .annotate(n=Count("id"), newest=Max("created_at"))
        .filter(n__gte=batch_min_runs())
    )
    done = []
    for group in groups:
        key = (group["namespace_id"], group["task_type"])
        since = last.get(key)
        if since is not None:
            fresh = (
                Trajectory.objects.filter(
                    Q(namespace_id=key[0])
                    & Q(task_type=key[1])
                    & Q(created_at__gt=since)
                )
                .exclude(status=RunStatus.RUNNING)
                .count()
            )
            if fresh < batch_min_runs():
                continue
        task_send(
            "learning.tasks.batch_reflect_task",
            key[0],
            key[1],
            task_name=f"batch-{key[0]}-{key[1]}"[:100],
            group="batch-reflection",
        )
        done.append(f"{key[0]}:{key[1]}")
    return {"queued": done}
