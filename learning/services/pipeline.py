"""Hooks from ingest into the reflection pipeline (decisions and queueing)."""

from learning.models import Trajectory


def runs_finished(*, runs: list[Trajectory]) -> None:
    """Called inside the transaction that finished these runs: records the sampling
    decision on each and queues reflection of the pending ones on commit."""
    from learning.services.reflection import runs_reflection_decide

    runs_reflection_decide(runs=runs)


def run_score_dropped(*, run: Trajectory, previous: float) -> None:
    """Called inside the transaction that lowered a finished run's effective score."""
    from learning.services.reflection import run_score_drop_handle

    run_score_drop_handle(run=run, previous=previous)
