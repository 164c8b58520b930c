"""The relearning queue: runs whose feedback departed from their outcome are reflected
again, highest priority first, with their effective score."""

from django.db.models import F, QuerySet
from django.utils import timezone

from learning.models import Namespace, ReflectionStatus, Trajectory
from learning.services.reflection import run_reflect


def relearning_queue(*, namespace: Namespace | None = None) -> QuerySet[Trajectory]:
    """Priority 10 first; equal priorities: the lowest effective score, then the oldest."""
    qs = Trajectory.objects.filter(needs_relearning=True).exclude(status="running")
    if namespace is not None:
        qs = qs.filter(namespace=namespace)
    return qs.order_by(
        "-relearning_priority",
        F("effective_score").asc(nulls_last=True),
        "created_at",
        "id",
    )


def relearning_process(*, limit: int = 20, namespace: Namespace | None = None) -> dict:
    """Re-reflect up to `limit` queued runs in priority order; a run leaves the queue
    once its reflection is stored (a failure keeps it queued for the next pass)."""
    done, errors = [], {}
    for run in list(relearning_queue(namespace=namespace)[:limit]):
        score = "none" if run.effective_score is None else f"{run.effective_score:.2f}"
        Trajectory.objects.filter(pk=run.pk).update(
            reflection_status=ReflectionStatus.PENDING,
            reflection_reason=(
                f"relearning (priority {run.relearning_priority}, effective score {score})"
            ),
            reflection_error="",
            reflection_attempts=0,
            updated_at=timezone.now(),
        )
        try:
            run_reflect(run_id=run.pk)
        except Exception as exc:  # noqa: BLE001 - one bad run must not stop the queue
            errors[str(run.pk)] = f"{exc.__class__.__name__}: {exc}"
            continue
        Trajectory.objects.filter(pk=run.pk).update(needs_relearning=False)
        done.append(str(run.pk))
    return {"relearned": done, "errors": errors}
