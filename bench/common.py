"""Shared helpers for the benchmarks: Django setup against DATABASE_URL, timing, and
the one-line result protocol (`RESULT {json}` as the last line of stdout)."""
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def django_setup(settings: str = "config.settings") -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings)
    if "postgres" not in os.environ.get("DATABASE_URL", ""):
        sys.exit("benchmarks run on PostgreSQL: set DATABASE_URL (make bench does)")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - start, value


def median_ms(fn, repeat: int = 7, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def report(results: dict) -> None:
    print("RESULT " + json.dumps(results), flush=True)
