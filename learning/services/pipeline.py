"""Hooks from ingest into the reflection pipeline (decisions and queueing)."""
from learning.models import Trajectory


def runs_finished(*, runs: list[Trajectory]) -> None:
    """Called inside the transaction that finished these runs."""


def run_score_dropped(*, run: Trajectory, previous: float) -> None:
    """Called inside the transaction that lowered a finished run's effective score."""
