"""Shared helpers for the benchmarks: Django setup against DATABASE_URL, timing, and
the one-line result protocol (`RESULT {json}` as the last line of stdout)."""

import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# Words for synthetic playbook entries (bench_audit, bench_recall): realistic enough
# that full-text and trigram matching have real work to do.
VERBS = """confirm check verify ask offer escalate record cancel refund rebook quote
retry cache log validate compare notify document summarise archive page restart drain
snapshot rotate tag export load dedupe partition backfill review approve schedule""".split()
NOUNS = """reservation cabin fare voucher baggage lounge upgrade passenger ticket invoice
order shipment address warranty subscription account password invoice payment card
coupon seat itinerary visa transfer hotel taxi meal infant wheelchair pet loyalty tier
membership refund chargeback dispute webhook timeout queue worker node volume disk
certificate backup replica index partition table schema column export report dashboard
metric alert pager incident deploy release branch migration fixture cache session token
region bucket pipeline batch stream topic consumer producer cluster namespace secret
quota limit budget forecast ledger tax currency exchange supplier catalog price discount
return exchange complaint feedback survey callback transcript language channel""".split()
WHENS = """when the customer is upset|before the deadline|after the first failure|during
peak hours|for premium members|on international routes|in the nightly batch|for new
accounts|when the queue backs up|before closing the ticket|after the migration|for
enterprise tenants|during the holiday season|on the first contact|for repeat
issues""".replace("\n", " ").split("|")


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
