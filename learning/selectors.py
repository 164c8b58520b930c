"""Reads for runs, always inside one namespace."""
from django.db.models import Count, Prefetch, QuerySet

from learning.models import Feedback, Namespace, Step, Trajectory


def run_list(*, namespace: Namespace, filters: dict | None = None) -> QuerySet[Trajectory]:
    from learning.filters import RunFilter

    qs = (
        Trajectory.objects.filter(namespace=namespace)
        .select_related("namespace")
        .annotate(step_count=Count("steps"))
        .order_by("-created_at", "-id")
    )
    if filters is not None:
        filterset = RunFilter(filters, queryset=qs)
        if not filterset.is_valid():
            raise InvalidFilters(filterset.errors)
        qs = filterset.qs
    return qs


def run_get(*, namespace: Namespace, run_id) -> Trajectory:
    """A run with its steps and feedback; DoesNotExist outside the namespace."""
    return (
        Trajectory.objects.select_related("namespace")
        .prefetch_related(
            Prefetch("steps", queryset=Step.objects.order_by("index")),
            Prefetch("feedback", queryset=Feedback.objects.order_by("created_at", "id")),
        )
        .annotate(step_count=Count("steps"))
        .get(namespace=namespace, pk=run_id)
    )


class InvalidFilters(Exception):
    def __init__(self, errors):
        super().__init__("invalid filters")
        self.errors = errors
