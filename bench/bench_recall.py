"""Recall cost against playbook size: the same task texts are recalled from playbooks
of 1,000, 10,000 and 100,000 strategies, in the same run, through the real API view
(token auth, ranking, budget, RecallLog write) in-process. Prints `recall_ms_1k`,
`recall_ms_10k`, `recall_ms_100k` (median server time) and the growth factors
`recall_growth_1k_10k`, `recall_growth_10k_100k`: matches come from the full-text GIN
index, so time should barely grow with size (goal: under 20 ms at 100,000)."""

import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import NOUNS, VERBS, WHENS, django_setup, report  # noqa: E402


def strategy_text(rng: random.Random, n: int) -> str:
    a, b, c = rng.sample(NOUNS, 3)
    return (
        f"{rng.choice(VERBS).capitalize()} the {a} {b} and the {c} "
        f"{rng.choice(WHENS).strip()} (case {n})."
    )


CONTEXTS = [
    "airline.change_flight",
    "airline.baggage",
    "retail.return",
    "ops.incident",
    "billing.refund",
    "support.escalation",
    "",
]


def build(size: int, rng: random.Random, token_name: str):
    from learning.models import Namespace
    from learning.services.tokens import token_create
    from playbooks.models import Playbook, PlaybookVersion, Strategy

    namespace = Namespace.objects.create(slug=f"bench-recall-{size}")
    playbook = Playbook.objects.create(
        namespace=namespace, slug="support", name="Support", current_version=1
    )
    PlaybookVersion.objects.create(playbook=playbook, number=1, change_kind="create")
    Strategy.objects.bulk_create(
        (
            Strategy(
                playbook=playbook,
                type="harmful" if n % 5 == 0 else "helpful",
                description=strategy_text(rng, n),
                context=rng.choice(CONTEXTS),
                confidence=round(rng.uniform(0.3, 0.95), 2),
                helpful_count=rng.randint(0, 9),
                harmful_count=rng.randint(0, 3),
                position=n,
            )
            for n in range(size)
        ),
        batch_size=2000,
    )
    _, raw = token_create(name=token_name, namespace_slug=namespace.slug, role="agent")
    return playbook, raw


def recall_times(client, raw: str, tasks: list[str]) -> list[float]:
    samples = []
    for task in tasks:
        started = time.perf_counter()
        response = client.get(
            "/api/v1/playbooks/support/context/",
            {"task": task, "budget_tokens": 600},
            HTTP_AUTHORIZATION=f"Bearer {raw}",
        )
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200, response.content[:200]
        assert response.json()["items"], task
    return samples


def main() -> dict:
    django_setup()
    from django.db import connection
    from django.test import Client

    rng = random.Random(11)
    small = build(1_000, rng, "bench-1k")
    large = build(10_000, rng, "bench-10k")
    huge = build(100_000, rng, "bench-100k")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE playbooks_strategy")
    # half sentence-long task descriptions, half two-word ones
    tasks = [
        strategy_text(rng, 80_000 + n).split(" (case")[0]
        if n % 2
        else " ".join(rng.sample(NOUNS, 2))
        for n in range(40)
    ]
    client = Client()
    recall_times(client, small[1], tasks[:5])  # warm-up: connection, plans, caches
    recall_times(client, large[1], tasks[:5])
    recall_times(client, huge[1], tasks[:5])
    # Interleaved, so a burst of load on the machine falls on every size alike.
    samples: dict = {"1k": [], "10k": [], "100k": []}
    for task in tasks[5:]:
        for size, (_, raw) in (("1k", small), ("10k", large), ("100k", huge)):
            samples[size] += recall_times(client, raw, [task])
    t = {size: statistics.median(values) for size, values in samples.items()}
    results = {
        "recall_ms_1k": round(t["1k"] * 1000, 2),
        "recall_ms_10k": round(t["10k"] * 1000, 2),
        "recall_ms_100k": round(t["100k"] * 1000, 2),
        "recall_growth_1k_10k": round(t["10k"] / t["1k"], 2),
        "recall_growth_10k_100k": round(t["100k"] / t["10k"], 2),
    }
    report(results)
    return results


if __name__ == "__main__":
    main()
