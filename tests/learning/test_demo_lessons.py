"""Issue 11's bar on the demo itself (the 200 tau-bench airline runs, imported and
reflected as `make run` does): approved wholesale, no recalled line says the opposite
of its candidate; lessons are general (at most 5% name a run's ids, amounts or an
instruction fragment); durable facts hold the state at the end of their run."""

import gzip
import json
import re
from pathlib import Path

import pytest
from django.conf import settings

from learning.lessons import run_specific_terms
from learning.models import SHAPED_KINDS, CandidateStatus, LearningCandidate, Step

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

FIXTURE = Path(settings.BASE_DIR) / "fixtures" / "tau-bench" / "gpt-4o-airline.json.gz"
NEGATION = re.compile(r"^(do not|avoid)\b", re.I)
ANY_NEGATION = re.compile(
    r"\b(avoid|avoiding|don't|do not|never|not|no longer)\b", re.I
)


@pytest.fixture(scope="module")
def demo(django_db_setup, django_db_blocker):
    """The demo imported (reflection and audits run on commit, Django-Q2 sync mode),
    then every strategy-like candidate approved wholesale by an admin."""
    from learning.importers import runs_import
    from learning.models import Namespace
    from learning.services.tokens import namespace_get_or_create
    from review.services import Actor, ReviewError, candidate_approve

    with django_db_blocker.unblock():
        namespace = namespace_get_or_create(slug="demo-lessons")
        runs_import(path=FIXTURE, fmt="tau-bench", namespace=namespace, agent="demo")
        admin = Actor("admin", is_admin=True)
        pending = LearningCandidate.objects.filter(
            namespace=namespace, status=CandidateStatus.PENDING, kind__in=SHAPED_KINDS
        )
        for pk in pending.order_by("pk").values_list("pk", flat=True):
            try:
                candidate_approve(
                    namespace=namespace,
                    candidate_id=pk,
                    actor=admin,
                    override=True,
                    note="wholesale",
                )
            except ReviewError:
                continue
        yield namespace
        Namespace.objects.filter(pk=namespace.pk).delete()


def _line_matches_polarity(line: str, polarity: str) -> bool:
    text = line.removeprefix("- ")
    body = text.split(", ", 1)[1] if text.lower().startswith(("when ", "if ")) else text
    if polarity == "avoid":
        return bool(NEGATION.match(body)) and len(ANY_NEGATION.findall(body)) >= 1
    return not NEGATION.match(body)


def test_no_recalled_line_says_the_opposite_of_its_candidate(demo):
    from playbooks.models import Playbook, Strategy
    from playbooks.recall import playbook_recall, strategy_line

    applied = LearningCandidate.objects.filter(
        namespace=demo, status=CandidateStatus.APPLIED, kind__in=SHAPED_KINDS
    )
    assert applied.count() >= 20
    by_key = {}
    for candidate in applied:
        strategy = Strategy.objects.filter(source_candidate=candidate).first()
        if strategy is None:  # reinforced an equal strategy instead of a copy
            continue
        assert strategy.polarity == candidate.polarity
        assert strategy_line(strategy) == f"- {candidate.content}"
        by_key[str(strategy.key)] = strategy
    playbook = Playbook.objects.get(namespace=demo, slug="airline")
    tasks = set(
        applied.values_list("evidence_runs__task_description", flat=True).distinct()
    )
    lines = 0
    for task in sorted(t for t in tasks if t):
        result = playbook_recall(
            playbook=playbook, task=task, budget_tokens=4000, log=False
        )
        text = result.context.splitlines()[1:]
        for item, line in zip(result.items, [t for t in text if t.startswith("- ")]):
            strategy = by_key.get(item["key"]) or Strategy.objects.get(pk=item["id"])
            assert line == f"- {strategy.description}", (line, strategy.description)
            assert _line_matches_polarity(line, strategy.polarity), line
            lines += 1
    assert lines >= 20
    print(f"\n{lines} recalled lines over {len(tasks)} tasks keep their meaning")


def test_lessons_are_general_not_bound_to_one_run(demo):
    from learning.models import Trajectory

    shaped = LearningCandidate.objects.filter(namespace=demo, kind__in=SHAPED_KINDS)
    total = shaped.count()
    tasks = list(
        Trajectory.objects.filter(namespace=demo).values_list(
            "task_description", flat=True
        )
    )
    words = [" ".join(t.lower().split()).split() for t in tasks]
    fragments = {" ".join(w[i : i + 7]) for w in words for i in range(len(w) - 6)}
    bound = []
    for content in shaped.values_list("content", flat=True):
        lowered = " ".join(content.lower().split()).split()
        own = {" ".join(lowered[i : i + 7]) for i in range(len(lowered) - 6)}
        if run_specific_terms(content) or own & fragments:
            bound.append(content)
    share = len(bound) / total
    print(
        f"\n{len(bound)} of {total} strategy/procedure candidates ({share:.1%}) name "
        "a run-specific id, amount or instruction fragment"
    )
    assert total >= 20 and share <= 0.05, bound[:5]


def _final_records(run) -> dict:
    """reservation id -> the last record of it the run's tool answers showed."""
    records = {}
    for text in (
        Step.objects.filter(trajectory=run, type="observation")
        .order_by("index")
        .values_list("description", flat=True)
    ):
        try:
            data = json.loads(text)
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("reservation_id"):
            records[data["reservation_id"]] = data
    return records


def test_durable_facts_hold_the_state_at_the_end_of_their_run(demo):
    facts = LearningCandidate.objects.filter(
        namespace=demo, kind="durable_fact", entity__startswith="reservation:"
    ).prefetch_related("evidence_runs")
    checked = 0
    for fact in facts:
        reservation = fact.entity.split(":", 1)[1]
        for run in fact.evidence_runs.all():
            final = _final_records(run).get(reservation)
            if final is None:
                continue
            text = fact.content
            if "cabin " in text:
                assert f"cabin {final['cabin']}" in text, (text, final["cabin"])
            if "status " in text:
                assert f"status {final.get('status')}" in text, (text, run.external_id)
            if "total baggages " in text:
                assert f"total baggages {final['total_baggages']}" in text, text
            if "flights " in text and final.get("flights"):
                numbers = [f["flight_number"] for f in final["flights"]]
                assert all(n in text for n in numbers[:4]), (text, numbers)
            checked += 1
    print(f"\n{checked} reservation facts checked against their run's final state")
    assert checked >= 10


def test_the_fixture_is_the_demo():
    records = json.load(gzip.open(FIXTURE))
    assert len(records) == 200
