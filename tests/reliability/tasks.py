"""Django-Q2 tasks used only by the reliability tests (run by real qcluster processes)."""

import os
import time
from pathlib import Path


def attempt_then_finish(marker_dir: str, first_attempt_seconds: float) -> str:
    """Marks each attempt with the worker's pid; the first attempt is slow (the test
    kills it), a later one finishes at once."""
    directory = Path(marker_dir)
    attempt = len(list(directory.glob("attempt-*"))) + 1
    (directory / f"attempt-{attempt}-{os.getpid()}").touch()
    if attempt == 1:
        time.sleep(first_attempt_seconds)
    (directory / "done").write_text(str(os.getpid()))
    return f"done on attempt {attempt}"


def record_worker(marker_dir: str, n: int, seconds: float = 0.2) -> int:
    """Records which cluster ran task n: the process group of its qcluster (each test
    cluster is started in its own session)."""
    time.sleep(seconds)
    (Path(marker_dir) / f"task-{n}-{os.getpgid(0)}").touch()
    return os.getpgid(0)
