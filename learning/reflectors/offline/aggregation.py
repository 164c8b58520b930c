"""Precision gates and merging: a lesson leaves the reflector only if its text is
general (no run-specific ids, amounts, dates; it names a tool or field) and it cites
steps or other evidence; one lesson per (kind, key) per run; and across a batch, one
pattern per key with every run that showed it."""

from collections import defaultdict

from learning.lessons import evidence_confidence, run_specific_terms
from learning.models import MEMORY_KINDS
from learning.reflectors.base import Lesson, RunView


def is_general(lesson: Lesson) -> bool:
    """Strategy and procedure text names a tool or field (in backticks) and nothing
    bound to one run. Memories are about one user or entity and are exempt."""
    if lesson.kind in MEMORY_KINDS:
        return True
    text = lesson.content or ""
    if run_specific_terms(text):
        return False
    # A correction is about this agent's work in its own words, and a namespace's rule
    # is its own text; anything else must name what it is about.
    return (
        "`" in text or lesson.provenance == "feedback" or lesson.key.startswith("rule|")
    )


def has_evidence(lesson: Lesson) -> bool:
    return bool(lesson.step_indexes or lesson.related_runs or lesson.run_ids)


def lessons_gate(lessons: list[Lesson]) -> list[Lesson]:
    """The lessons that pass the gates, one per (kind, key): a second finding of the
    same key in the run adds its steps to the first."""
    kept: dict[tuple[str, str], Lesson] = {}
    for lesson in lessons:
        if not lesson.content or not is_general(lesson) or not has_evidence(lesson):
            continue
        k = (lesson.kind, lesson.key or lesson.content)
        if k in kept:
            first = kept[k]
            first.step_indexes = sorted(
                set(first.step_indexes) | set(lesson.step_indexes)
            )
            for run_id, steps in lesson.related_runs.items():
                first.related_runs.setdefault(run_id, steps)
            first.confidence = max(first.confidence, lesson.confidence)
        else:
            kept[k] = lesson
    return list(kept.values())


def batch_patterns(
    found: list[tuple[RunView, Lesson]], *, total: int, task_type: str
) -> list[Lesson]:
    """Lessons found in at least two runs of a batch, one per key, with every run as
    evidence and confidence grown with how many showed it."""
    grouped: dict[tuple[str, str], list[tuple[RunView, Lesson]]] = defaultdict(list)
    for run, lesson in found:
        if lesson.kind in MEMORY_KINDS:
            continue  # about one user or entity: not a pattern across runs
        grouped[(lesson.kind, lesson.key or lesson.content)].append((run, lesson))
    patterns = []
    for (_kind, key), hits in grouped.items():
        run_ids = list(dict.fromkeys(run.id for run, _lesson in hits))
        if len(run_ids) < 2:
            continue
        first = hits[0][1]
        steps: dict = {}
        for run, lesson in hits:
            steps.setdefault(run.id, set()).update(lesson.step_indexes)
        patterns.append(
            Lesson(
                kind=first.kind,
                polarity=first.polarity,
                when=first.when,
                directive=first.directive,
                why=first.why,
                content=first.content,
                provenance="batch",
                rationale=(
                    f"Batch reflection: found in {len(run_ids)} of {total} "
                    f"{task_type or 'untyped'} runs. {first.rationale}"
                ),
                confidence=evidence_confidence(
                    base=first.confidence, runs=len(run_ids)
                ),
                key=key,
                related_runs={rid: sorted(s) for rid, s in steps.items()},
                run_ids=run_ids,
                frequency=len(run_ids),
            )
        )
    patterns.sort(key=lambda lesson: (-lesson.frequency, lesson.content))
    return patterns
