"""The lesson-quality evaluation: the development sets bundled in fixtures/ go through
what users get, and the candidates are measured: how many failed runs got one, how
many per run, whether the steps they cite hold the failure, whether their text carries
one run's ids, and which texts repeat most.

Two paths, one measurement:
- ``db``: the importer stores the runs in a throwaway namespace, the reflection
  decision and `run_reflect` run as in a worker (reflector, `lessons_to_candidates`,
  candidates merged by fingerprint), and everything is rolled back at the end; about a
  tenth of a second per run, mostly the database.
- ``memory`` (the default, seconds for every set): the importer's converters and
  validation, the same decision, the same peers (`peers_pick`, the rule `peers_for`
  applies in SQL), the same reflector, and candidates merged by the same fingerprint
  (`candidate_fingerprint` on the same scope). A test runs both on a slice and checks
  they give the same candidates.

The namespace has no reflection rules: this measures the domain-neutral engine."""

import re
import time
import uuid
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from django.conf import settings
from django.db import transaction

from learning.lessons import run_specific_terms
from learning.models import (
    MEMORY_KINDS,
    CandidateEvidence,
    LearningCandidate,
    Namespace,
    Reflection,
    ReflectionStatus,
    Trajectory,
)
from learning.reflectors.base import Lesson, RunView, StepView
from learning.reflectors.offline import run_parse
from learning.services import reflection as reflection_services

FIXTURES = Path(settings.BASE_DIR) / "fixtures"
_USER_TROUBLE = re.compile(
    r"\b(?:don[’']?t|do not|can[’']?t|cannot|didn[’']?t) (?:have|remember|find|know)\b|"
    r"\b(?:wrong|incorrect|not what i|mistake|misunderstand|that'?s not)\b",
    re.I,
)


@dataclass(frozen=True)
class EvalSet:
    name: str
    fmt: str
    path: Path
    task_type: str
    drop_expected: bool = False  # remove the evaluator's expected actions first


def eval_sets() -> list[EvalSet]:
    tau = FIXTURES / "tau-bench" / "gpt-4o-airline.json.gz"
    return [
        EvalSet("tau-bench airline", "tau-bench", tau, "airline"),
        EvalSet(
            "tau-bench airline, no expected_actions",
            "tau-bench",
            tau,
            "airline",
            drop_expected=True,
        ),
        EvalSet("SWE-agent", "swe-agent", FIXTURES / "swe-agent", "swe-agent"),
        EvalSet(
            "ReAct HotpotQA",
            "react-log",
            FIXTURES / "react-hotpotqa" / "react_base_100_questions_5_trials.txt.gz",
            "hotpotqa",
        ),
    ]


@dataclass
class SetReport:
    name: str
    runs: int = 0
    failed: int = 0
    reflected: int = 0
    failed_with_lesson: int = 0
    failed_with_root_cause: int = 0
    candidates: int = 0
    strategy_candidates: int = 0
    memories: int = 0
    lessons: int = 0  # (candidate, run) pairs from per-run reflection
    cited_signal: int = 0
    cited_checked: int = 0
    run_specific: int = 0
    tasks: int = 0
    seconds: float = 0.0
    reflect_ms: float = 0.0
    top: list = field(default_factory=list)  # (content, kind, runs, tasks)
    # Every candidate text and the runs behind it (by external id): what a reviewer
    # would see, comparable between the two paths.
    evidence_by_text: dict = field(default_factory=dict)

    @property
    def lessons_per_run(self) -> float:
        return self.lessons / self.reflected if self.reflected else 0.0

    def share(self, part: int, whole: int) -> float:
        return part / whole if whole else 0.0

    @property
    def max_task_share(self) -> float:
        """The largest share of the set's distinct tasks one lesson text covers."""
        return (
            max((t / self.tasks for *_rest, t in self.top), default=0.0)
            if self.tasks
            else 0.0
        )

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "runs": self.runs,
            "failed": self.failed,
            "reflected": self.reflected,
            "failed_with_lesson": self.failed_with_lesson,
            "failed_with_lesson_share": round(
                self.share(self.failed_with_lesson, self.failed), 3
            ),
            "failed_with_root_cause_share": round(
                self.share(self.failed_with_root_cause, self.failed), 3
            ),
            "candidates": self.candidates,
            "memories": self.memories,
            "lessons_per_run": round(self.lessons_per_run, 2),
            "cited_signal_share": round(
                self.share(self.cited_signal, self.cited_checked), 3
            ),
            "run_specific_share": round(
                self.share(self.run_specific, self.strategy_candidates), 3
            ),
            "max_task_share": round(self.max_task_share, 3),
            "reflect_ms_per_run": round(self.reflect_ms, 2),
            "seconds": round(self.seconds, 1),
            "top": [
                {"content": c, "kind": k, "runs": r, "tasks": t}
                for c, k, r, t in self.top
            ],
        }


@dataclass
class _Result:
    """What one path produced for a set: the runs as the reflector saw them, which
    were reflected and which got a lesson on why they failed, the candidates and
    their evidence (candidate, run, cited steps)."""

    views: list = field(default_factory=list)
    reflected: set = field(default_factory=set)
    rooted: set = field(default_factory=set)
    candidates: dict = field(default_factory=dict)  # id -> (kind, content)
    evidence: list = field(default_factory=list)
    clock: list = field(default_factory=list)


def lesson_eval(
    *,
    sets: list[EvalSet] | None = None,
    limit: int | None = None,
    path: str = "memory",
    keep: str = "",
) -> list[SetReport]:
    """Run every set through the pipeline (`path` "memory" or "db") and measure its
    candidates. The db path rolls everything back unless `keep` names a namespace
    prefix to leave the sets in (to read them in the console)."""
    reports = []
    for item in sets or eval_sets():
        started = time.perf_counter()
        if path == "db":
            result = _db_result(item, limit=limit, keep=keep)
        else:
            result = _memory_result(item, limit=limit)
        report = _measure(item, result)
        report.seconds = time.perf_counter() - started
        reports.append(report)
    return reports


# --- the database path --------------------------------------------------------------


class _Rollback(Exception):
    pass


@contextmanager
def _timed_reflector(clock: list):
    """Measure the reflector alone inside `run_reflect` (the pipeline's hot path)."""
    real = reflection_services.reflector_get

    class Timed:
        def __init__(self, inner):
            self.inner, self.name = inner, inner.name

        def reflect(self, **kwargs):
            started = time.perf_counter()
            try:
                return self.inner.reflect(**kwargs)
            finally:
                clock.append(time.perf_counter() - started)

    reflection_services.reflector_get = lambda: Timed(real())
    try:
        yield
    finally:
        reflection_services.reflector_get = real


def _db_result(item: EvalSet, *, limit: int | None, keep: str) -> _Result:
    result = _Result()
    try:
        with transaction.atomic():
            namespace = Namespace.objects.create(
                slug=f"{keep or 'lesson-eval'}-{item.fmt}-{uuid.uuid4().hex[:8]}"[:100],
                name=item.name,
            )
            runs = _import(item, namespace, limit)
            pending = Trajectory.objects.filter(
                namespace=namespace, reflection_status=ReflectionStatus.PENDING
            ).order_by("created_at", "id")
            with _timed_reflector(result.clock):
                for run_id in list(pending.values_list("pk", flat=True)):
                    reflection_services.run_reflect(run_id=run_id)
            _db_read(result, namespace, runs)
            if not keep:
                raise _Rollback
    except _Rollback:
        pass
    return result


def _import(item: EvalSet, namespace: Namespace, limit: int | None) -> list[Trajectory]:
    from learning.importers import runs_import

    report = runs_import(
        path=item.path,
        fmt=item.fmt,
        namespace=namespace,
        agent=f"eval-{item.fmt}",
        limit=limit,
        domain=item.task_type,
    )
    if report.rejected:
        reasons = "; ".join(f"{r.where}: {r.reason}" for r in report.rejected[:3])
        raise ValueError(
            f"{item.name}: {len(report.rejected)} records rejected ({reasons})"
        )
    runs = list(
        Trajectory.objects.filter(namespace=namespace).order_by("created_at", "id")
    )
    if item.drop_expected:
        for run in runs:
            run.metrics.pop("expected_actions", None)
        Trajectory.objects.bulk_update(runs, ["metrics"], batch_size=500)
    return runs


def _db_read(result: _Result, namespace: Namespace, runs: list[Trajectory]) -> None:
    result.views = reflection_services.run_views(runs)
    for reflection in Reflection.objects.filter(namespace=namespace, is_batch=False):
        result.reflected.add(reflection.trajectory_id)
        items = (
            reflection.helpful_strategies
            + reflection.harmful_patterns
            + reflection.observations
        )
        if any(isinstance(i, dict) and i.get("root_cause") for i in items):
            result.rooted.add(reflection.trajectory_id)
    for candidate in LearningCandidate.objects.filter(namespace=namespace):
        result.candidates[candidate.pk] = (candidate.kind, candidate.content)
    result.evidence = list(
        CandidateEvidence.objects.filter(candidate__namespace=namespace).values_list(
            "candidate_id", "trajectory_id", "step_indexes"
        )
    )


# --- the in-memory path -------------------------------------------------------------


def _payloads(item: EvalSet, limit: int | None) -> list[dict]:
    """The set's runs as the importer validates them (first of an external id wins)."""
    from learning.importers import _record_check, format_records_open

    _total, records = format_records_open(item.path, fmt=item.fmt, limit=limit)
    out, seen = [], set()
    for where, record, error in records:
        if error is None:
            error, payload = _record_check(
                record, fmt=item.fmt, domain=item.task_type, name=where
            )
        if error is not None:
            raise ValueError(f"{item.name}: {where} rejected ({error})")
        external = payload.get("external_id")
        if external in seen:
            continue
        seen.add(external)
        if item.drop_expected and isinstance(payload.get("metrics"), dict):
            payload["metrics"] = {
                k: v for k, v in payload["metrics"].items() if k != "expected_actions"
            }
        out.append(payload)
    return out


def _view(item: EvalSet, payload: dict, index: int) -> RunView:
    """A payload as `run_view` shows a stored run (score = the run's own, no feedback)."""
    key = f"{item.name}|{payload.get('external_id') or index}"
    status = payload.get("status") or "running"
    return RunView(
        id=uuid.uuid5(uuid.NAMESPACE_URL, key),
        task_type=payload.get("task_type") or "",
        task_description=payload.get("task_description") or "",
        status=status,
        score=payload.get("success_score"),
        user_id=payload.get("user_id") or "",
        agent=payload.get("agent") or f"eval-{item.fmt}",
        error_message=payload.get("error_message") or "",
        metrics=payload.get("metrics")
        if isinstance(payload.get("metrics"), dict)
        else {},
        session_id=payload.get("session_id") or "",
        external_id=payload.get("external_id") or "",
        success_score=payload.get("success_score"),
        steps=[
            StepView(
                index=i,
                type=step.get("type", ""),
                description=step.get("description", ""),
                tool=step.get("tool") or "",
                result=step.get("result"),
            )
            for i, step in enumerate(
                (payload.get("steps") or [])[: reflection_services.STEP_LIMIT]
            )
        ],
    )


def peers_pick(view: RunView, views: list[RunView], *, limit: int) -> list[RunView]:
    """`peers_for`'s rule over runs in memory (`views` oldest first): successful runs
    of the task type, those of the same task first, then the newest."""
    pool = [
        v
        for v in reversed(views)
        if v.status == "success" and v.task_type == view.task_type and v.id != view.id
    ]
    same = [v for v in pool if v.task_description == view.task_description][:20]
    chosen = {v.id for v in same}
    rest = [v for v in pool if v.id not in chosen][: max(0, limit - len(same))]
    return same + rest


def _pending(view: RunView) -> bool:
    from learning.services.reflection import reflection_decide

    probe = Trajectory(
        id=view.id,
        status=view.status,
        success_score=view.success_score,
        effective_score=view.score,
    )
    return reflection_decide(run=probe)[0] == ReflectionStatus.PENDING


def _scope(lesson: Lesson, task_type: str) -> str:
    from learning.services.candidates import _scope_label
    from playbooks.services import playbook_slug_for_task_type

    user = lesson.user_id
    memory_scope = lesson.memory_scope or ("user" if user else "namespace")
    return _scope_label(
        kind=lesson.kind,
        playbook=SimpleNamespace(pk=playbook_slug_for_task_type(task_type)),
        skill=None,
        memory_scope=memory_scope,
        user_id=user,
        entity=lesson.entity,
    )


def _memory_result(item: EvalSet, *, limit: int | None) -> _Result:
    from learning.reflectors import reflector_get
    from learning.services.candidates import candidate_fingerprint

    result = _Result()
    result.views = [_view(item, p, i) for i, p in enumerate(_payloads(item, limit))]
    ids = {v.id for v in result.views}
    reflector = reflector_get()
    for view in result.views:
        if not _pending(view):
            continue
        peers = peers_pick(view, result.views, limit=reflection_services.PEER_LIMIT)
        started = time.perf_counter()
        lessons = reflector.reflect(run=view, peers=peers).lessons
        result.clock.append(time.perf_counter() - started)
        result.reflected.add(view.id)
        if any(lesson.root_cause for lesson in lessons):
            result.rooted.add(view.id)
        for lesson in lessons:
            fingerprint = candidate_fingerprint(
                kind=lesson.kind,
                key=lesson.key or lesson.content,
                scope=_scope(lesson, view.task_type),
            )
            result.candidates.setdefault(fingerprint, (lesson.kind, lesson.content))
            result.evidence.append((fingerprint, view.id, list(lesson.step_indexes)))
            for run_id, steps in lesson.related_runs.items():
                if run_id in ids:
                    result.evidence.append((fingerprint, run_id, list(steps or [])))
    # A run counts once per candidate (the database keeps one evidence row, steps merged).
    merged: dict = {}
    for fingerprint, run_id, steps in result.evidence:
        merged.setdefault((fingerprint, run_id), set()).update(steps)
    result.evidence = [(f, r, sorted(s)) for (f, r), s in merged.items()]
    return result


# --- measuring ------------------------------------------------------------------------


def _signal_steps(view) -> tuple[set, dict]:
    """Steps where a run's failure shows, read without the reflector's analyses: the
    answers the shared error detector reads as failures and their calls, the run's
    final call and its answer, the user's messages saying something is wrong or
    cannot be given; plus every call step by tool (a lesson that names a tool may
    cite its call)."""
    parsed = run_parse(view)
    steps: set = {m.step for m in parsed.user_messages if _USER_TROUBLE.search(m.text)}
    by_tool: dict = defaultdict(set)
    for call in parsed.calls:
        by_tool[call.tool].update(call.steps)
        if call.failed:
            steps.update(call.steps)
    if parsed.calls:
        steps.update(parsed.calls[-1].steps)
    if view.steps:
        steps.add(view.steps[-1].index)
    return steps, by_tool


def _measure(item: EvalSet, result: _Result) -> SetReport:
    views = {v.id: v for v in result.views}
    report = SetReport(name=item.name, runs=len(views))
    failed = {v.id for v in result.views if v.failed}
    report.failed = len(failed)
    report.tasks = len({v.task_description for v in result.views})
    report.reflected = len(result.reflected)
    report.failed_with_root_cause = len(result.rooted & failed)
    report.candidates = len(result.candidates)
    strategies = {
        k: c for k, (kind, c) in result.candidates.items() if kind not in MEMORY_KINDS
    }
    report.strategy_candidates = len(strategies)
    report.run_specific = sum(bool(run_specific_terms(c)) for c in strategies.values())
    report.lessons = len(result.evidence)
    # A lesson here is a strategy or procedure: memories (facts, preferences) are
    # counted apart, since they say nothing about why a run failed.
    report.failed_with_lesson = len(
        {run for c, run, _s in result.evidence if c in strategies} & failed
    )
    report.memories = sum(
        kind in MEMORY_KINDS for kind, _c in result.candidates.values()
    )
    report.reflect_ms = (
        1000 * sum(result.clock) / len(result.clock) if result.clock else 0.0
    )
    signals: dict = {}
    runs_of: dict = defaultdict(set)
    for candidate_id, run_id, cited in result.evidence:
        runs_of[candidate_id].add(run_id)
        kind, content = result.candidates[candidate_id]
        if kind in MEMORY_KINDS or run_id not in failed or not cited:
            continue
        if run_id not in signals:
            signals[run_id] = _signal_steps(views[run_id])
        steps, by_tool = signals[run_id]
        named = {
            s
            for tool, found in by_tool.items()
            if f"`{tool}`" in content
            for s in found
        }
        report.cited_checked += 1
        report.cited_signal += bool(set(cited) & (steps | named))
    report.evidence_by_text = {
        content: {views[r].external_id for r in runs_of[c] if r in views}
        for c, (_kind, content) in result.candidates.items()
    }
    ranked = sorted(
        result.candidates, key=lambda c: (-len(runs_of[c]), result.candidates[c][1])
    )
    report.top = [
        (
            result.candidates[c][1],
            result.candidates[c][0],
            len(runs_of[c]),
            len({views[r].task_description for r in runs_of[c] if r in views}),
        )
        for c in ranked[:15]
    ]
    return report


def report_lines(reports: list[SetReport]) -> list[str]:
    """The table and, per set, the most repeated lesson texts."""
    head = (
        f"{'set':40} {'runs':>5} {'failed':>6} {'w/ lesson':>9} {'root':>5} "
        f"{'per run':>7} {'cites':>6} {'run-id':>6} {'max':>5} {'ms':>5}"
    )
    lines = [head, "-" * len(head)]
    for r in reports:
        lines.append(
            f"{r.name[:40]:40} {r.runs:5d} {r.failed:6d} "
            f"{r.share(r.failed_with_lesson, r.failed):9.0%} "
            f"{r.share(r.failed_with_root_cause, r.failed):5.0%} "
            f"{r.lessons_per_run:7.2f} {r.share(r.cited_signal, r.cited_checked):6.0%} "
            f"{r.share(r.run_specific, r.strategy_candidates):6.0%} "
            f"{r.max_task_share:5.0%} {r.reflect_ms:5.1f}"
        )
    lines.append("")
    lines.append(
        "w/ lesson: failed runs that are evidence of at least one strategy candidate "
        "(facts and preferences not counted); root: "
        "failed runs with a lesson on why they failed; per run: lessons per reflected "
        "run; cites: lessons whose cited steps hold the failure signal; run-id: "
        "strategy candidates naming a run-specific id, amount or date; max: largest "
        "share of the set's tasks one lesson text covers; ms: reflector time per run."
    )
    for r in reports:
        lines.append("")
        lines.append(f"{r.name}: the 15 most repeated lessons (runs, distinct tasks)")
        for content, kind, runs, tasks in r.top:
            lines.append(f"  {runs:4d} {tasks:4d}  [{kind}] {content}")
    return lines
