"""Reflection on finished runs: the sampling decision, queueing, the idempotent reflect
step that turns a run into candidates, and the sweeper for runs left pending."""

import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from learning.models import (
    Feedback,
    Reflection,
    ReflectionStatus,
    RunStatus,
    Step,
    Trajectory,
)
from learning.queue import task_send
from learning.reflectors import (
    FeedbackView,
    Lesson,
    RecalledView,
    ReflectionResult,
    RunView,
    StepView,
    reflector_get,
)
from learning.services.candidates import (
    MEMORY_KINDS,
    CandidateProposal,
    EvidenceRef,
    candidates_create,
)
from playbooks.counters import strategy_counters_add, strategy_tags_of

logger = logging.getLogger(__name__)

REFLECT_TASK = "learning.tasks.run_reflect_task"
FANOUT_TASK = "learning.tasks.reflection_fanout_task"
PEER_LIMIT = 30  # successful runs of the task type loaded for contrast
SAME_TASK_LIMIT = 20  # of which at most this many of the very same task
STEP_LIMIT = 400  # steps of one run handed to a reflector


def max_attempts() -> int:
    return int(getattr(settings, "FLYWHEEL_REFLECTION_MAX_ATTEMPTS", 3))


def stale_after() -> timedelta:
    """A pending run untouched this long is re-queued by the sweeper. Longer than the
    broker's `retry`, so a re-delivery after a killed worker comes first."""
    default = int(settings.Q_CLUSTER.get("retry", 180)) + 60
    return timedelta(
        seconds=int(getattr(settings, "FLYWHEEL_REFLECTION_STALE_SECONDS", default))
    )


def success_sample_bucket(run_id) -> float:
    """A deterministic number in [0, 1) from the run id."""
    digest = hashlib.sha256(str(run_id).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def reflection_decide(*, run: Trajectory) -> tuple[str, str]:
    """(status, reason): always reflect on failures, partials and runs whose effective
    score dropped below their own; a deterministic fraction of successes."""
    if run.status == RunStatus.RUNNING:
        return ReflectionStatus.UNDECIDED, ""
    if run.status == RunStatus.FAILURE:
        return ReflectionStatus.PENDING, "failure"
    if run.status == RunStatus.PARTIAL:
        return ReflectionStatus.PENDING, "partial"
    if (
        run.success_score is not None
        and run.effective_score is not None
        and run.effective_score < run.success_score
    ):
        return (
            ReflectionStatus.PENDING,
            f"effective score dropped ({run.success_score:.2f} → {run.effective_score:.2f})",
        )
    # The reason names the rate, not the run's bucket, so a batch of decisions is a
    # handful of distinct rows to write (runs_reflection_decide groups by them).
    rate = float(settings.FLYWHEEL_SUCCESS_SAMPLE_RATE)
    if success_sample_bucket(run.id) < rate:
        return ReflectionStatus.PENDING, f"sampled success (rate {rate:g})"
    return ReflectionStatus.SKIPPED, f"success not sampled (rate {rate:g})"


def reflection_enqueue(*, run_ids: list) -> None:
    """Queue reflection of these runs once the current transaction commits."""
    ids = [str(r) for r in run_ids]
    if not ids:
        return

    def _send():
        # A batch goes out as one set task, so ingest writes one broker row per
        # request, not one per run, and the worker reflects the set together.
        if len(ids) > 1:
            reflection_sets_send(run_ids=ids)
            return
        reflection_tasks_send(run_ids=ids)

    transaction.on_commit(_send)


def reflection_tasks_send(*, run_ids: list[str]) -> None:
    """One reflection task per run (what the fan-out task does on the worker)."""
    for run_id in run_ids:
        try:
            task_send(
                REFLECT_TASK, run_id, task_name=f"reflect-{run_id}", group="reflection"
            )
        except Exception:  # noqa: BLE001 - the sweeper re-queues what did not go out
            logger.exception("could not queue reflection of run %s", run_id)


def runs_reflection_decide(*, runs: list[Trajectory]) -> None:
    """Record the decision on each finished run and queue the pending ones (on commit)."""
    pending, groups = [], {}
    now = timezone.now()
    for run in runs:
        status, reason = reflection_decide(run=run)
        if status == ReflectionStatus.UNDECIDED:
            continue
        run.reflection_status, run.reflection_reason = status, reason[:200]
        run.updated_at = now  # the caller may answer with this very object
        groups.setdefault((status, reason[:200]), []).append(run.pk)
        if status == ReflectionStatus.PENDING:
            pending.append(run.pk)
    for (status, reason), ids in groups.items():  # one UPDATE per distinct decision
        Trajectory.objects.filter(pk__in=ids).update(
            reflection_status=status,
            reflection_reason=reason,
            reflection_error="",
            reflection_attempts=0,
            updated_at=now,
        )
    reflection_enqueue(run_ids=pending)


def run_score_drop_handle(*, run: Trajectory, previous: float) -> None:
    """A finished run whose effective score fell is reflected (again) with the new score.
    A reflection already pending (a sampled success, say) is not queued twice, but its
    reason becomes the drop: that reflection reads the feedback, and the reason must
    say why the run is reflected whatever its id sampled."""
    reason = f"effective score dropped ({previous:.2f} → {run.effective_score:.2f})"
    if run.reflection_status == ReflectionStatus.PENDING:
        Trajectory.objects.filter(pk=run.pk).update(reflection_reason=reason[:200])
        run.reflection_reason = reason
        return
    Trajectory.objects.filter(pk=run.pk).update(
        reflection_status=ReflectionStatus.PENDING,
        reflection_reason=reason[:200],
        reflection_error="",
        reflection_attempts=0,
        updated_at=timezone.now(),
    )
    run.reflection_status, run.reflection_reason = ReflectionStatus.PENDING, reason
    reflection_enqueue(run_ids=[run.pk])


# --- reflecting ----------------------------------------------------------------------


def run_view(
    run: Trajectory, steps=None, *, feedback=None, recalled=None, rules=None
) -> RunView:
    """The reflector's view of a run. `rules` are the namespace's reflection rules
    (read from `run.namespace` when not given: load it with the run)."""
    steps = (
        steps if steps is not None else list(run.steps.order_by("index")[:STEP_LIMIT])
    )
    if feedback is None:
        feedback = list(run.feedback.all())
    if recalled is None:
        recalled = runs_recalled(runs=[run]).get(run.pk, [])
    return RunView(
        id=run.id,
        task_type=run.task_type,
        task_description=run.task_description,
        status=run.status,
        score=run.effective_score
        if run.effective_score is not None
        else run.success_score,
        user_id=run.user_id,
        agent=run.agent,
        error_message=run.error_message,
        metrics=run.metrics if isinstance(run.metrics, dict) else {},
        session_id=run.session_id,
        external_id=run.external_id or "",
        success_score=run.success_score,
        duration_ms=run.duration_ms,
        tokens_used=run.tokens_used,
        steps=[
            StepView(
                index=s.index,
                type=s.type,
                description=s.description,
                tool=s.tool,
                result=s.result,
            )
            for s in steps
        ],
        feedback=[
            FeedbackView(
                feedback_type=f.feedback_type,
                score=f.score,
                source=f.source,
                message=f.message,
                metrics=f.metrics if isinstance(f.metrics, dict) else {},
                created_at=f.created_at.isoformat() if f.created_at else "",
            )
            for f in feedback
        ],
        recalled=recalled,
        rules=rules if rules is not None else _namespace_rules(run),
    )


def _namespace_rules(run: Trajectory) -> dict:
    rules = run.namespace.reflection_rules if run.namespace_id else {}
    return rules if isinstance(rules, dict) else {}


def runs_recalled(*, runs: list[Trajectory]) -> dict:
    """The playbook lessons each run received through recall: the recall logs linked
    to the run (by its external id, else its session) and the strategies they handed
    out, as {run pk: [RecalledView]} in two queries."""
    from playbooks.models import RecallLog, Strategy

    by_external = {r.external_id: r.pk for r in runs if r.external_id}
    by_session = {r.session_id: r.pk for r in runs if r.session_id}
    if not by_external and not by_session:
        return {}
    namespace_ids = {r.namespace_id for r in runs}
    logs = RecallLog.objects.filter(namespace_id__in=namespace_ids).filter(
        Q(run_external_id__in=list(by_external)) | Q(session_id__in=list(by_session))
    )
    wanted: dict = {}
    keys: set = set()
    for log in logs.select_related("playbook").order_by("created_at", "id")[:200]:
        run_pk = by_external.get(log.run_external_id) or by_session.get(log.session_id)
        if run_pk is None:
            continue
        for key in log.strategy_keys or []:
            wanted.setdefault(run_pk, []).append((key, log.playbook.slug, log.version))
            keys.add(key)
    strategies = {
        str(s.key): s
        for s in Strategy.objects.filter(
            key__in=keys, playbook__namespace_id__in=namespace_ids
        )
    }
    out: dict = {}
    for run_pk, items in wanted.items():
        seen = set()
        for key, slug, version in items:
            strategy = strategies.get(str(key))
            if strategy is None or key in seen:
                continue
            seen.add(key)
            out.setdefault(run_pk, []).append(
                RecalledView(
                    key=str(key),
                    type=strategy.type,
                    text=strategy.description,
                    playbook=slug,
                    version=version,
                )
            )
    return out


def run_views(runs: list[Trajectory], *, with_rules: bool = False) -> list[RunView]:
    """Views of many runs with their steps, feedback and recalled lessons in a fixed
    number of queries; `with_rules` for runs to reflect (their namespaces loaded)."""
    by_run: dict = {r.pk: [] for r in runs}
    for step in Step.objects.filter(trajectory_id__in=by_run).order_by(
        "trajectory_id", "index"
    ):
        if len(by_run[step.trajectory_id]) < STEP_LIMIT:
            by_run[step.trajectory_id].append(step)
    feedback: dict = {r.pk: [] for r in runs}
    for item in Feedback.objects.filter(trajectory_id__in=by_run).order_by(
        "created_at", "id"
    ):
        feedback[item.trajectory_id].append(item)
    recalled = runs_recalled(runs=runs)
    # Peers and batches need no rules of their own: the run reflected carries them.
    return [
        run_view(
            r,
            by_run[r.pk],
            feedback=feedback[r.pk],
            recalled=recalled.get(r.pk, []),
            rules=_namespace_rules(r) if with_rules else {},
        )
        for r in runs
    ]


PEER_CACHE_SIZE = 512
_peer_views: OrderedDict = OrderedDict()


def peer_views(runs: list[Trajectory]) -> list[RunView]:
    """`run_views` for the peers of a reflection, remembered per (run, updated_at) in
    this process: a worker reflecting a burst of runs of one task type sees the same
    successful peers each time, and loading their steps again dominated the cost of
    reflecting. Any change that matters (feedback, a revised outcome, redaction)
    moves `updated_at`, so a remembered view is never stale."""
    found: dict = {}
    missing = []
    for run in runs:
        key = (run.pk, run.updated_at)
        view = _peer_views.get(key)
        if view is None:
            missing.append(run)
        else:
            _peer_views.move_to_end(key)
            found[run.pk] = view
    for run, view in zip(missing, run_views(missing) if missing else []):
        _peer_views[(run.pk, run.updated_at)] = found[run.pk] = view
        if len(_peer_views) > PEER_CACHE_SIZE:
            _peer_views.popitem(last=False)
    return [found[run.pk] for run in runs]


def peers_for(*, run: Trajectory, limit: int = PEER_LIMIT) -> list[Trajectory]:
    """Successful runs of the same task type to contrast with: the same task first,
    then the newest. (Every contrast is with successes, so failures are not loaded.)"""
    base = Trajectory.objects.filter(
        namespace_id=run.namespace_id, task_type=run.task_type, status=RunStatus.SUCCESS
    ).exclude(pk=run.pk)
    same = list(
        base.filter(task_description=run.task_description).order_by("-created_at")[
            :SAME_TASK_LIMIT
        ]
    )
    rest = list(
        base.exclude(pk__in=[p.pk for p in same]).order_by("-created_at")[
            : max(0, limit - len(same))
        ]
    )
    return same + rest


class ReflectionFailed(Exception):
    pass


def run_reflect(*, run_id, force: bool = False) -> Reflection | None:
    """Reflect on one run: idempotent. A run that is no longer pending is left alone
    (unless `force`); reflecting the same run again updates its one Reflection and adds
    no candidate or evidence twice. The attempt is counted before the work so a worker
    killed mid-way still leaves a trace the sweeper reads."""
    with transaction.atomic():
        run = (
            Trajectory.objects.select_for_update(of=("self",))
            .select_related("namespace")
            .filter(pk=run_id)
            .first()
        )
        if run is None:
            return None
        if run.status == RunStatus.RUNNING:
            return None
        if run.reflection_status != ReflectionStatus.PENDING and not force:
            return None
        run.reflection_attempts += 1
        run.save(update_fields=["reflection_attempts", "updated_at"])
    try:
        peers = peer_views(peers_for(run=run))
        result = reflector_get().reflect(run=run_view(run), peers=peers)
        return reflection_commit(run=run, result=result, force=force)
    except Exception as exc:
        run_reflection_failure_record(
            run_id=run.pk, error=f"{exc.__class__.__name__}: {exc}"
        )
        raise


def reflection_commit(
    *, run: Trajectory, result: ReflectionResult, force: bool = False
) -> Reflection | None:
    """Store a reflector's result for a claimed run and mark it reflected: a set of one
    (`reflections_store`), so a run reflected alone and a run of a set are stored,
    turned into candidates and audited alike. A twin that finished first wins (unless
    `force`): its Reflection is returned."""
    stored = reflections_store(items=[(run, result)], force=force)
    if stored:
        return stored[0]
    return run.reflections.filter(is_batch=False).order_by("created_at", "id").first()


# --- reflecting a set of runs in one task ---------------------------------------------

SET_SIZE = 25  # runs reflected by one task; a larger set is split into several


def set_budget_seconds() -> float:
    """A set task stops starting new runs after half the broker's task timeout and
    hands the rest to a new task, so a slow (model) reflector is never killed."""
    return float(settings.Q_CLUSTER.get("timeout", 120)) / 2


def runs_claim(*, run_ids: list) -> list[Trajectory]:
    """Lock the pending, finished runs among `run_ids` (in id order: two sets never
    deadlock), count an attempt on each in one UPDATE, and return them with their
    namespaces."""
    now = timezone.now()
    with transaction.atomic():
        runs = list(
            Trajectory.objects.select_for_update(of=("self",))
            .select_related("namespace")
            .filter(pk__in=run_ids, reflection_status=ReflectionStatus.PENDING)
            .exclude(status=RunStatus.RUNNING)
            .order_by("pk")
        )
        Trajectory.objects.filter(pk__in=[r.pk for r in runs]).update(
            reflection_attempts=F("reflection_attempts") + 1, updated_at=now
        )
    for run in runs:
        run.reflection_attempts += 1
        run.updated_at = now
    return runs


def peer_pools(runs: list[Trajectory], *, limit: int = PEER_LIMIT) -> dict:
    """What `peers_for` would load for each run, in two queries per (namespace, task
    type): the newest successes, and the newest SAME_TASK_LIMIT + 1 per task
    description of the set. Returns {run pk: [peer Trajectory]} in `peers_for`'s
    order."""
    groups: dict = {}
    for run in runs:
        groups.setdefault((run.namespace_id, run.task_type), []).append(run)
    out: dict = {}
    for (namespace_id, task_type), members in groups.items():
        base = Trajectory.objects.filter(
            namespace_id=namespace_id, task_type=task_type, status=RunStatus.SUCCESS
        )
        newest = list(base.order_by("-created_at")[: limit + 1])
        ranked = base.filter(
            task_description__in={r.task_description for r in members}
        ).annotate(
            rank=Window(
                RowNumber(),
                partition_by=[F("task_description")],
                order_by=F("created_at").desc(),
            )
        )
        by_task: dict = {}
        for peer in ranked.filter(rank__lte=SAME_TASK_LIMIT + 1).order_by(
            "task_description", "rank"
        ):
            by_task.setdefault(peer.task_description, []).append(peer)
        for run in members:
            same = [p for p in by_task.get(run.task_description, []) if p.pk != run.pk]
            same = same[:SAME_TASK_LIMIT]
            taken = {p.pk for p in same} | {run.pk}
            rest = [p for p in newest if p.pk not in taken]
            out[run.pk] = same + rest[: max(0, limit - len(same))]
    return out


def runs_reflect(*, run_ids: list) -> dict:
    """Reflect on a set of runs in one task: the runs, their steps, feedback and
    recalled lessons are loaded once for the set, the successful peers once per task
    type, and every run is stored in its own transaction (one run's failure is
    recorded on it and never stops the others). A set larger than SET_SIZE is split:
    this task takes the first SET_SIZE and queues the rest; runs not started within the
    time budget are handed back (their attempt uncounted) to a new task."""
    ids = [str(r) for r in run_ids]
    mine, rest = ids[:SET_SIZE], ids[SET_SIZE:]
    for i in range(0, len(rest), SET_SIZE):
        reflection_sets_send(run_ids=rest[i : i + SET_SIZE])
    runs = runs_claim(run_ids=mine)
    if not runs:
        return {"reflected": 0, "failed": 0, "handed_back": 0}
    deadline = time.monotonic() + set_budget_seconds()
    views = dict(zip([r.pk for r in runs], run_views(runs, with_rules=True)))
    pools = peer_pools(runs)
    # Every peer of the set loaded at once (3 queries), not the missing ones run by
    # run: reflecting successes moves their `updated_at`, so each set finds most of
    # its peers changed since the last one.
    peer_views(list({p.pk: p for pool in pools.values() for p in pool}.values()))
    reflector = reflector_get()
    done, failed, left = [], 0, []
    for run in runs:
        if (done or failed) and time.monotonic() > deadline:
            left.append(run.pk)  # at least one run per task: a set always progresses
            continue
        try:
            result = reflector.reflect(
                run=views[run.pk], peers=peer_views(pools[run.pk])
            )
            done.append((run, result))
        except Exception as exc:  # noqa: BLE001 - recorded on the run, the set goes on
            _reflection_failed(run, exc)
            failed += 1
    reflected, store_failed = reflections_commit(items=done)
    failed += store_failed
    if left:
        Trajectory.objects.filter(pk__in=left).update(
            reflection_attempts=F("reflection_attempts") - 1
        )
        reflection_sets_send(run_ids=[str(pk) for pk in left])
    return {"reflected": reflected, "failed": failed, "handed_back": len(left)}


def _reflection_failed(run, exc) -> None:
    logger.exception("reflection of run %s failed", run.pk)
    run_reflection_failure_record(
        run_id=run.pk, error=f"{exc.__class__.__name__}: {exc}"
    )


def reflections_commit(*, items: list) -> tuple[int, int]:
    """Store the reflectors' results for a set of claimed runs: all in one transaction
    (`reflections_store`); should that fail, run by run, so one run's failure is
    recorded on it and never stops the others. Returns (reflected, failed)."""
    if not items:
        return 0, 0
    try:
        reflections_store(items=items)
        return len(items), 0
    except Exception:  # noqa: BLE001 - the runs are stored one by one below
        logger.exception("storing a set of %d reflections failed", len(items))
    reflected = failed = 0
    for run, result in items:
        try:
            reflection_commit(run=run, result=result)
            reflected += 1
        except Exception as exc:  # noqa: BLE001 - recorded on the run
            _reflection_failed(run, exc)
            failed += 1
    return reflected, failed


def reflections_store(*, items: list, force: bool = False) -> list:
    """Store the reflectors' results for a set of claimed runs, in one transaction and
    a fixed number of queries: the runs locked together, their Reflections read,
    inserted and updated in bulk (a run's one non-batch Reflection is updated in
    place), the candidates of every run as one set per namespace
    (`lessons_to_candidates_set`), and the runs marked reflected. A run a twin task
    reflected first is left as it is, unless `force`. Returns the stored Reflections."""
    with transaction.atomic():
        locked = {
            r.pk: r
            for r in Trajectory.objects.select_for_update()
            .filter(pk__in=[run.pk for run, _ in items])
            .order_by("pk")
        }
        todo = [
            (locked[run.pk], run, result)
            for run, result in items
            if run.pk in locked
            and (
                force or locked[run.pk].reflection_status != ReflectionStatus.REFLECTED
            )
        ]
        existing: dict = {}
        for row in Reflection.objects.filter(
            trajectory_id__in=[t.pk for t, _, _ in todo], is_batch=False
        ).order_by("created_at", "id"):
            existing.setdefault(row.trajectory_id, row)
        new, changed, stored, by_namespace = [], [], [], {}
        for target, run, result in todo:
            target.namespace = run.namespace  # loaded with the run: its rules
            values = dict(
                namespace_id=target.namespace_id,
                task_type=target.task_type,
                is_batch=False,
                **reflection_fields(result),
            )
            reflection = existing.get(target.pk)
            previous_tags = strategy_tags_of(
                reflection.observations if reflection else []
            )
            if reflection is None:
                reflection = Reflection(trajectory=target, **values)
                new.append(reflection)
            else:
                for key, value in values.items():
                    setattr(reflection, key, value)
                changed.append(reflection)
            stored.append(reflection)
            strategy_counters_add(
                namespace_id=target.namespace_id,
                tags=result.strategy_tags,
                replacing=previous_tags,
            )
            by_namespace.setdefault(target.namespace_id, []).append(
                LessonSet(
                    lessons=result.lessons,
                    reflection=reflection,
                    run=target,
                    task_type=target.task_type,
                    agent=target.agent,
                )
            )
        Reflection.objects.bulk_create(new)
        if changed:
            Reflection.objects.bulk_update(changed, list(values))
        namespaces = {t.namespace_id: t.namespace for t, _, _ in todo}
        for namespace_id, sets in by_namespace.items():
            # This task audits what it made once it commits: no second broker hop
            # between a posted failure and its audited candidates.
            lessons_to_candidates_set(
                namespace=namespaces[namespace_id], items=sets, audit_here=True
            )
        _runs_mark_reflected(todo)
    return stored


def _runs_mark_reflected(todo: list) -> None:
    """One UPDATE per distinct outcome (reflected, or reflected by the fallback)."""
    now = timezone.now()
    groups: dict = {}
    for target, _run, result in todo:
        error = f"fallback: {result.fallback_reason}"[:2000] if result.fallback else ""
        groups.setdefault(error, []).append(target.pk)
    for error, ids in groups.items():
        Trajectory.objects.filter(pk__in=ids).update(
            reflection_status=ReflectionStatus.REFLECTED,
            reflection_error=error,
            reflected_at=now,
            updated_at=now,
        )


def reflection_sets_send(*, run_ids: list[str]) -> None:
    """Queue one set task for these runs (the sweeper re-queues what did not go out)."""
    try:
        task_send(
            FANOUT_TASK,
            run_ids,
            task_name=f"reflect-set-{run_ids[0]}",
            group="reflection",
        )
    except Exception:  # noqa: BLE001
        logger.exception("could not queue reflection of %d runs", len(run_ids))


def run_reflection_failure_record(*, run_id, error: str) -> None:
    """Keep the error; give up (status `failed`) after the maximum number of attempts."""
    with transaction.atomic():
        run = Trajectory.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.reflection_status != ReflectionStatus.PENDING:
            return
        run.reflection_error = error[:2000]
        if run.reflection_attempts >= max_attempts():
            run.reflection_status = ReflectionStatus.FAILED
        run.save(update_fields=["reflection_error", "reflection_status", "updated_at"])


HELPFUL_KINDS = ("strategy_helpful", "procedure")


def reflection_fields(result: ReflectionResult) -> dict:
    """A Reflection's analysis and cost fields from a reflector's result: helpful
    strategies, harmful patterns, and every other lesson as an observation."""
    lessons = result.lessons
    return dict(
        helpful_strategies=[x.as_item() for x in lessons if x.kind in HELPFUL_KINDS],
        harmful_patterns=[x.as_item() for x in lessons if x.kind == "strategy_harmful"],
        observations=[
            x.as_item()
            for x in lessons
            if x.kind not in HELPFUL_KINDS and x.kind != "strategy_harmful"
        ]
        + [tag.as_item() for tag in result.strategy_tags]
        + (
            [{"kind": "diagnosis", "description": result.summary}]
            if result.summary
            else []
        ),
        reflector=result.reflector,
        fallback=result.fallback,
        fallback_reason=result.fallback_reason,
        prompt_version=result.prompt_version,
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
        cost_usd=result.cost_usd,
    )


def lessons_to_candidates(
    *,
    namespace,
    lessons: list[Lesson],
    reflection,
    run=None,
    task_type: str = "",
    agent: str = "",
    source: str = "reflection",
):
    """One candidate per lesson (merged with an equal pending one), with evidence: the
    run and its steps, plus the other runs the lesson was contrasted with."""
    return [
        candidate
        for candidate, _new in lessons_to_candidates_set(
            namespace=namespace,
            items=[
                LessonSet(
                    lessons=lessons,
                    reflection=reflection,
                    run=run,
                    task_type=task_type,
                    agent=agent,
                    source=source,
                )
            ],
        )
    ]


@dataclass
class LessonSet:
    """The lessons of one reflection, to be stored as candidates."""

    lessons: list
    reflection: object
    run: object = None
    task_type: str = ""
    agent: str = ""
    source: str = "reflection"


def _task_playbooks(*, namespace, task_types: set) -> dict:
    from playbooks.services import playbook_for_task_type

    out = {}
    for task_type in sorted(task_types):
        try:
            with transaction.atomic():
                out[task_type] = playbook_for_task_type(
                    namespace=namespace, task_type=task_type
                )
        except IntegrityError:  # another worker created it at the same moment
            out[task_type] = playbook_for_task_type(
                namespace=namespace, task_type=task_type
            )
    return out


def lessons_to_candidates_set(
    *, namespace, items: list[LessonSet], audit_here: bool = False
) -> list:
    """`lessons_to_candidates` for the reflections of a set of runs of one namespace,
    in order, as one `candidates_create`: the task types' playbooks and the runs named
    as evidence are looked up once for the set. Returns (candidate, created) pairs."""
    playbooks = _task_playbooks(
        namespace=namespace,
        task_types={
            item.task_type
            for item in items
            if any(lesson.kind not in MEMORY_KINDS for lesson in item.lessons)
        },
    )
    named = {
        rid
        for item in items
        for lesson in item.lessons
        for rid in list(lesson.related_runs) + list(lesson.run_ids)
    }
    known = (
        set(
            Trajectory.objects.filter(namespace=namespace, pk__in=named).values_list(
                "pk", flat=True
            )
        )
        if named
        else set()
    )
    proposals = []
    for item in items:
        for lesson in item.lessons:
            evidence = []
            if item.run is not None:
                evidence.append(
                    EvidenceRef(run_id=item.run.pk, step_indexes=lesson.step_indexes)
                )
            for rid, steps in lesson.related_runs.items():
                if rid in known:
                    evidence.append(EvidenceRef(run_id=rid, step_indexes=steps or []))
            for rid in lesson.run_ids:
                if rid in known and rid not in lesson.related_runs:
                    evidence.append(EvidenceRef(run_id=rid, step_indexes=[]))
            proposals.append(
                CandidateProposal(
                    kind=lesson.kind,
                    content=lesson.content,
                    rationale=lesson.rationale,
                    confidence=lesson.confidence,
                    task_type=item.task_type,
                    agent=item.agent,
                    user_id=lesson.user_id,
                    entity=lesson.entity,
                    memory_scope=lesson.memory_scope,
                    evidence=evidence,
                    reflection=item.reflection,
                    source=item.source,
                    key=lesson.key,
                    playbook=None
                    if lesson.kind in MEMORY_KINDS
                    else playbooks.get(item.task_type),
                    polarity=lesson.polarity,
                    when=lesson.when,
                    directive=lesson.directive,
                    why=lesson.why,
                    provenance=lesson.provenance,
                )
            )
    return candidates_create(
        namespace=namespace, proposals=proposals, audit_here=audit_here
    )


# --- the sweeper ---------------------------------------------------------------------


def reflection_sweep(*, now=None) -> dict:
    """No run is left without a reflection decision: finished runs never decided get
    one; pending runs untouched past the deadline are re-queued, or marked `failed`
    with the error and attempts once they have used every attempt."""
    now = now or timezone.now()
    undecided = list(
        Trajectory.objects.filter(reflection_status=ReflectionStatus.UNDECIDED).exclude(
            status=RunStatus.RUNNING
        )[:500]
    )
    if undecided:
        with transaction.atomic():
            runs_reflection_decide(runs=undecided)
    stale = now - stale_after()
    requeued, failed = [], []
    with transaction.atomic():
        rows = list(
            Trajectory.objects.select_for_update(skip_locked=True)
            .filter(reflection_status=ReflectionStatus.PENDING, updated_at__lt=stale)
            .order_by("updated_at")[:500]
        )
        for run in rows:
            if run.reflection_attempts >= max_attempts():
                run.reflection_status = ReflectionStatus.FAILED
                run.reflection_error = (
                    run.reflection_error
                    or f"no reflection after {run.reflection_attempts} attempts (worker lost)"
                )
                failed.append(run.pk)
            else:
                requeued.append(run.pk)
            run.save(
                update_fields=["reflection_status", "reflection_error", "updated_at"]
            )
        reflection_enqueue(run_ids=requeued)
    return {"decided": len(undecided), "requeued": len(requeued), "failed": len(failed)}
