"""Recall by situation (issue 11): is the context recalled for a task about *that* task?

The tau-bench airline demo (50 tasks × 4 trials, fixtures/tau-bench, MIT) is split:
trials 0 and 1 of every task are learned from — reflected offline, audited, and every
strategy-like candidate approved wholesale into the `airline` playbook — and trials 2
and 3 that failed are the test. For each failing test trial we take the tool it went on
to get wrong (the first of the evaluator's ground-truth actions it did not perform with
the same arguments; else its first failing call) and recall the playbook's context
twice, with the default budget:

- for the trial's own task: does a recalled lesson tell the agent to use that tool?
  (`recall_own_task_hit`)
- for an unrelated task (the next task whose ground truth does not use that tool):
  does one tell it to use the tool anyway? (`recall_unrelated_hit`)

A lesson that names the tool to avoid it ("When the task asks to X, do not call
`tool`") does not count: for a task that does not need the tool it is what should be
recalled. `recall_situation_gap_any_mention` counts every mention, as the first
version of this benchmark did.

The context for a task should be about that task: the goal is a gap of at least 25
points (`recall_situation_gap`). Recall goes through the service the API calls
(`playbooks.recall.playbook_recall`, not logged)."""

import gzip
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, django_setup, report  # noqa: E402

FIXTURE = ROOT / "fixtures" / "tau-bench" / "gpt-4o-airline.json.gz"
LEARN_TRIALS = (0, 1)


def _calls(record: dict) -> list[tuple[str, dict]]:
    calls = []
    for message in record["traj"]:
        for call in message.get("tool_calls") or []:
            fn = call["function"]
            try:
                args = json.loads(fn.get("arguments") or "{}")
            except ValueError:
                args = {}
            calls.append((fn["name"], args))
    return calls


def _gold(record: dict) -> list[tuple[str, dict]]:
    return [
        (a["name"], a.get("kwargs") or {}) for a in record["info"]["task"]["actions"]
    ]


def tool_gone_wrong(record: dict) -> str | None:
    """The first ground-truth action the run did not perform with the same arguments;
    else the first call answered with an error."""
    made = _calls(record)
    for name, kwargs in _gold(record):
        if (name, kwargs) not in made:
            return name
    errors = [
        m
        for m in record["traj"]
        if m["role"] == "tool" and str(m.get("content", "")).lower().startswith("error")
    ]
    if errors:
        return errors[0].get("name")
    return None


def mentions(context: str, tool: str) -> bool:
    return tool.lower() in context.lower()


def advises(items: list[dict], tool: str) -> bool:
    """A recalled lesson tells the agent to use `tool` (an `avoid` lesson that names it,
    "When the task asks to X, do not call `tool`", tells it the opposite: for a task
    that does not need the tool that is the right thing to recall)."""
    return any(
        item.get("polarity") != "avoid" and mentions(item["description"], tool)
        for item in items
    )


def learn(records: list[dict]):
    from django.conf import settings

    from learning.audit_tasks import candidate_audit_task
    from learning.importers import payload_convert
    from learning.models import SHAPED_KINDS, LearningCandidate
    from learning.services.reflection import run_reflect
    from learning.services.runs import runs_ingest
    from learning.services.tokens import namespace_get_or_create
    from playbooks.models import Playbook
    from review.services import Actor, ReviewError, candidate_approve

    settings.FLYWHEEL_SUCCESS_SAMPLE_RATE = 1.0
    namespace = namespace_get_or_create(slug="bench-situation")
    payloads = [payload_convert(r, fmt="tau-bench", domain="airline") for r in records]
    results = runs_ingest(namespace=namespace, agent="bench", runs=payloads)
    for result in results:
        run_reflect(run_id=result.run.pk, force=True)
    candidates = LearningCandidate.objects.filter(namespace=namespace)
    for pk in candidates.values_list("pk", flat=True):
        candidate_audit_task(pk)
    approved = 0
    admin = Actor("bench", is_admin=True)
    for candidate in candidates.filter(status="pending", kind__in=SHAPED_KINDS):
        try:
            candidate_approve(
                namespace=namespace,
                candidate_id=candidate.pk,
                actor=admin,
                override=True,
                note="wholesale",
            )
            approved += 1
        except ReviewError:
            continue
    return Playbook.objects.get(namespace=namespace, slug="airline"), approved


def main() -> dict:
    django_setup()
    from playbooks.recall import playbook_recall

    records = json.load(gzip.open(FIXTURE))
    learned = [r for r in records if r["trial"] in LEARN_TRIALS]
    tests = [
        r for r in records if r["trial"] not in LEARN_TRIALS and (r["reward"] or 0) < 1
    ]
    playbook, approved = learn(learned)
    by_task = {}
    for r in records:
        by_task.setdefault(r["task_id"], r)
    task_ids = sorted(by_task)
    own = unrelated = counted = own_any = unrelated_any = 0
    for record in tests:
        tool = tool_gone_wrong(record)
        if not tool:
            continue
        counted += 1
        task = record["info"]["task"]["instruction"]
        recalled = playbook_recall(playbook=playbook, task=task, log=False)
        own += advises(recalled.items, tool)
        own_any += mentions(recalled.context, tool)
        start = task_ids.index(record["task_id"])
        other = next(
            by_task[task_ids[(start + k) % len(task_ids)]]
            for k in range(1, len(task_ids))
            if tool
            not in {n for n, _ in _gold(by_task[task_ids[(start + k) % len(task_ids)]])}
        )
        other_recalled = playbook_recall(
            playbook=playbook, task=other["info"]["task"]["instruction"], log=False
        )
        unrelated += advises(other_recalled.items, tool)
        unrelated_any += mentions(other_recalled.context, tool)
    own_rate = own / counted if counted else 0.0
    unrelated_rate = unrelated / counted if counted else 0.0
    any_gap = (own_any - unrelated_any) / counted if counted else 0.0
    return {
        # any mention, whatever the lesson says about the tool (the first definition)
        "recall_situation_gap_any_mention": round(any_gap, 3),
        "recall_own_task_hit": round(own_rate, 3),
        "recall_unrelated_hit": round(unrelated_rate, 3),
        "recall_situation_gap": round(own_rate - unrelated_rate, 3),
        "recall_situation_cases": counted,
        "recall_situation_strategies": approved,
    }


if __name__ == "__main__":
    report(main())
