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


def record_worker(marker_dir: str, n: int) -> int:
    """Records which worker process ran task n (a short task, for scale-out tests)."""
    time.sleep(0.05)
    (Path(marker_dir) / f"task-{n}-{os.getpid()}-{os.getppid()}").touch()
    return os.getpid()
