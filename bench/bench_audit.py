"""Audit cost against the size of the curated knowledge: the same candidates are
audited against a playbook of 100 strategies (and 100 memories) and one of 10,000
(and 10,000 memories), in the same run. Prints `audit_growth_100_10k` (median audit
time at 10,000 ÷ at 100): the candidate set comes from the trigram/full-text GIN
indexes, so it should stay far below 100."""

import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import NOUNS, VERBS, WHENS, django_setup, report  # noqa: E402

SYLLABLES = "ka lo mi ter van sul pre dor bex quin ra tos fel gim nu par".split()
# Product, tool and place names: a real playbook's vocabulary grows with it.
ENTITIES = sorted({"".join(random.Random(i).sample(SYLLABLES, 3)) for i in range(4000)})


def strategy_text(rng: random.Random, n: int) -> str:
    a, b, c = rng.sample(NOUNS, 3)
    return (
        f"{rng.choice(VERBS).capitalize()} the {rng.choice(ENTITIES)} {a} {b} and "
        f"the {c} {rng.choice(WHENS).strip()}."
    )


def build(size: int, rng: random.Random):
    from learning.models import Namespace
    from playbooks.models import Memory, Playbook, Strategy

    namespace = Namespace.objects.create(slug=f"bench-audit-{size}")
    playbook = Playbook.objects.create(
        namespace=namespace, slug="support", name="Support"
    )
    Strategy.objects.bulk_create(
        (
            Strategy(
                playbook=playbook,
                type="helpful",
                description=strategy_text(rng, n),
                position=n,
            )
            for n in range(size)
        ),
        batch_size=2000,
    )
    Memory.objects.bulk_create(
        (
            Memory(
                namespace=namespace, kind="durable_fact", content=strategy_text(rng, n)
            )
            for n in range(size)
        ),
        batch_size=2000,
    )
    return namespace, playbook


def audit_times(namespace, playbook, texts: list[str]) -> list[float]:
    from learning.models import LearningCandidate
    from learning.services.audit import candidate_audit

    samples = []
    for text in texts:
        candidate = LearningCandidate.objects.create(
            namespace=namespace,
            kind="strategy_helpful",
            content=text,
            playbook=playbook,
        )
        started = time.perf_counter()
        candidate_audit(candidate=candidate)
        samples.append(time.perf_counter() - started)
    return samples


def main() -> dict:
    django_setup()
    from django.db import connection

    rng = random.Random(7)
    small = build(100, rng)
    large = build(10_000, rng)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE playbooks_strategy")
        cursor.execute("ANALYZE playbooks_memory")
        cursor.execute("ANALYZE learning_learningcandidate")
    texts = [strategy_text(rng, 90_000 + n) for n in range(43)]
    audit_times(*small, texts[:3])  # warm-up: connections, caches, plans
    audit_times(*large, texts[:3])
    # The sizes interleaved text by text, so a change in the machine's load falls on
    # both sides of the ratio alike.
    samples_small, samples_large = [], []
    for text in texts[3:]:
        samples_small += audit_times(*small, [text])
        samples_large += audit_times(*large, [text])
    t_small = statistics.median(samples_small)
    t_large = statistics.median(samples_large)
    results = {
        "audit_growth_100_10k": round(t_large / t_small, 2),
        "audit_ms_100": round(t_small * 1000, 1),
        "audit_ms_10k": round(t_large * 1000, 1),
    }
    report(results)
    return results


if __name__ == "__main__":
    main()
