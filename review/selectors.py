"""Reads for the reviewer console, always limited to the namespaces the user reviews."""

from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import EmptyResultSet
from django.db.models import Count, Prefetch, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.fields.json import KT
from django.db.models.functions import TruncDate
from django.http import QueryDict
from django.utils import timezone

from learning.candidate_filters import CandidateFilter
from learning.filters import RunFilter
from learning.models import (
    CandidateEvidence,
    CandidateKind,
    CandidateStatus,
    Feedback,
    LearningCandidate,
    Namespace,
    RunStatus,
    Step,
    Trajectory,
)
from learning.permissions import user_namespaces
from learning.selectors import run_step_count
from review.models import AuditEvent

QUEUE_DEFAULT_STATUS = CandidateStatus.PENDING.value
# Query parameters that do not narrow the per-status counts below the whole queue.
UNNARROWING_PARAMS = {"status", "namespace", "show_hidden", "page", "per_page"}
# Filters on columns the queue index does not carry (review/migrations/0004): a
# LIMITed scan of that index would read the table row by row, so these are counted
# exactly with one GROUP BY (`run` reaches few rows through the evidence index).
UNINDEXED_PARAMS = {"q", "run"}
ALL = "all"


def reviewable_candidates(*, user) -> QuerySet[LearningCandidate]:
    """Candidates in the namespaces where `user` is at least a reviewer (one subquery)."""
    return LearningCandidate.objects.filter(namespace__in=user_namespaces(user))


COUNT_CAP = 1000
# Under filters, a LIMITed scan walks cap ÷ (share of rows matching) index entries per
# status, so it stops sooner: 100 is two pages of the queue.
NARROWED_COUNT_CAP = 100


@dataclass(frozen=True)
class Counting:
    """How the status tabs count a queue: exactly, or each status up to `cap`."""

    exact: bool = False
    cap: int = COUNT_CAP


def is_narrowed(params: QueryDict) -> bool:
    """Whether `params` filter the queue beyond status and namespace."""
    return bool(set(params) - UNNARROWING_PARAMS)


def counting_for(params: QueryDict) -> Counting:
    """The whole queue and filters the queue index carries: capped index-only scans
    (COUNT_CAP unfiltered, NARROWED_COUNT_CAP filtered); a filter it does not carry:
    exact."""
    if set(params) & UNINDEXED_PARAMS:
        return Counting(exact=True)
    return Counting(cap=NARROWED_COUNT_CAP if is_narrowed(params) else COUNT_CAP)


@dataclass
class Queue:
    filterset: CandidateFilter
    candidates: QuerySet
    without_status: (
        QuerySet  # the same filters except status: for the per-status counts
    )
    status: list[str]
    namespace: str
    show_hidden: bool = False
    narrowed: bool = False  # filters beyond status and namespace
    counting: Counting = Counting()


def clean_params(params) -> QueryDict:
    """A mutable copy without empty values (a GET form sends `kind=` for "any")."""
    data = QueryDict(mutable=True)
    items = (
        params.lists()
        if isinstance(params, QueryDict)
        else ((k, v if isinstance(v, list) else [v]) for k, v in dict(params).items())
    )
    for key, values in items:
        values = [v for v in values if v not in ("", None)]
        if values:
            data.setlist(key, values)
    return data


def queue_params(params) -> QueryDict:
    """The queue lists pending candidates unless a status is asked for; `status=all`
    lists every status."""
    params = clean_params(params)
    statuses = [s for s in params.getlist("status") if s]
    if not statuses:
        params.setlist("status", [QUEUE_DEFAULT_STATUS])
    elif ALL in statuses:
        params.setlist("status", [])
    return params


def candidate_queue(
    *, user, params, namespaces: list[Namespace] | None = None
) -> Queue:
    """The review queue for `params` (a QueryDict from the URL), filtered by
    CandidateFilter exactly as the API filters, plus a `namespace` slug. The user's
    namespaces are resolved first (pass them if already loaded), so the candidate
    queries filter on literal ids and use the (namespace, status, created_at) index."""
    params = queue_params(params)
    if namespaces is None:
        namespaces = user_namespace_choices(user=user)
    ids = [ns.pk for ns in namespaces]
    namespace = (params.get("namespace") or "").strip()
    if namespace:
        ids = [ns.pk for ns in namespaces if ns.slug == namespace]
    base = LearningCandidate.objects.filter(namespace_id__in=ids)
    filterset = CandidateFilter(params, queryset=base)
    valid = filterset.is_valid()
    candidates = filterset.qs if valid else base.none()
    candidates = candidates.select_related(
        "namespace", "playbook", "skill", "leased_by"
    )
    candidates = candidates.order_by("-created_at", "-id")
    narrowed = is_narrowed(params)
    return Queue(
        narrowed=narrowed,
        counting=counting_for(params),
        show_hidden=bool(valid and filterset.form.cleaned_data.get("show_hidden")),
        filterset=filterset,
        candidates=candidates,
        without_status=(
            filterset.without_status()
            if valid and narrowed
            else _counts_queryset(base, params, narrowed)
        ),
        status=params.getlist("status"),
        namespace=namespace,
    )


def _counts_queryset(base: QuerySet, params: QueryDict, narrowed: bool) -> QuerySet:
    """The queue's filters without the status (for the per-status counts). Without
    narrowing filters that is the namespaces' candidates as they are: no FilterSet
    to build (status_counts hides below-floor pending candidates itself)."""
    if not narrowed:
        return base
    without = params.copy()
    without.setlist("status", [])
    without["show_hidden"] = "true"
    counts_filter = CandidateFilter(without, queryset=base)
    return counts_filter.qs if counts_filter.is_valid() else base.none()


@dataclass
class QueueCounts:
    counts: dict
    capped: set
    current: str


def queue_counts(*, user, params) -> QueueCounts:
    """Only the per-status counts of the queue `params` describe, and its current
    tab: what a row action sends back out of band (no list, no second FilterSet)."""
    params = queue_params(params)
    namespaces = user_namespace_choices(user=user)
    namespace = (params.get("namespace") or "").strip()
    ids = [ns.pk for ns in namespaces if not namespace or ns.slug == namespace]
    base = LearningCandidate.objects.filter(namespace_id__in=ids)
    narrowed = is_narrowed(params)
    show_hidden = bool(
        CandidateFilter.base_filters["show_hidden"]
        .field_class(required=False)
        .clean(params.get("show_hidden"))
    )
    counts, capped = status_counts(
        candidates=_counts_queryset(base, params, narrowed),
        show_hidden=show_hidden,
        counting=counting_for(params),
    )
    statuses = params.getlist("status")
    current = statuses[0] if len(statuses) == 1 else ALL
    return QueueCounts(counts=counts, capped=capped, current=current)


def status_counts(
    *,
    candidates: QuerySet,
    show_hidden: bool = False,
    counting: Counting = Counting(),
) -> tuple[dict[str, int], set[str]]:
    """Candidates per status. Below-floor pending candidates are left out as the queue
    leaves them out, unless asked to show them.

    Each status is counted up to `counting.cap` (the tabs then say "1000+" or
    "100+") in one statement of LIMITed index-only scans: an exact COUNT(*) per status
    over a large queue costs more than the rest of the page (a filtered GROUP BY at
    1,000,000 candidates reads the whole table). `counting.exact` (a filter the index does not
    carry) counts exactly with one GROUP BY instead, since LIMITed scans would then
    fetch table rows one by one to find few matches.
    Returns (counts, the statuses whose count reached the cap)."""
    if counting.exact:
        return _status_counts_grouped(candidates=candidates, show_hidden=show_hidden)
    from django.db import connection

    cap = counting.cap

    per_status = candidates
    if not show_hidden:
        per_status = candidates.filter(
            Q(below_floor=False) | ~Q(status=CandidateStatus.PENDING)
        )
    # One statement: a LIMITed scan per status, written once and run for each status
    # of a VALUES list (compiling eight querysets cost more than running them), then
    # "All", which hides every below-floor candidate as CandidateFilter does without a
    # status. Its statuses are listed so that the scan descends the (namespace, status,
    # …) indexes once per status rather than walking the whole namespace or table.
    every = candidates.filter(status__in=CandidateStatus.values)
    if not show_hidden:
        every = every.filter(below_floor=False)
    statuses = CandidateStatus.values
    try:
        one_status, one_params = _capped_ids_sql(
            per_status.filter(status=RawSQL("wanted.column1", ())), cap
        )
        every_sql, every_params = _capped_ids_sql(every, cap)
    except EmptyResultSet:  # no namespace, or an invalid filter: nothing to count
        return {status: 0 for status in [*statuses, ALL]}, set()
    values = ", ".join(["(%s)"] * len(statuses))
    sql = (
        f"SELECT wanted.column1, (SELECT COUNT(*) FROM ({one_status}) AS one)"
        f" FROM (VALUES {values}) AS wanted"
        f" UNION ALL SELECT %s, (SELECT COUNT(*) FROM ({every_sql}) AS every)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*one_params, *statuses, ALL, *every_params])
        row = dict(cursor.fetchall())
    counts, capped = {}, set()
    for status in [*statuses, ALL]:
        n = row[status]
        counts[status] = min(n, cap)
        if n > cap:
            capped.add(status)
    return counts, capped


def _capped_ids_sql(candidates: QuerySet, cap: int) -> tuple[str, tuple]:
    return candidates.order_by().values("id")[: cap + 1].query.sql_with_params()


def _status_counts_grouped(*, candidates: QuerySet, show_hidden: bool):
    hidden = Q() if show_hidden else Q(below_floor=True)
    pending_hidden = (
        Q(status=CandidateStatus.PENDING) & hidden if not show_hidden else None
    )
    rows = (
        candidates.order_by()
        .values("status")
        .annotate(
            n=Count("id", filter=~pending_hidden)
            if pending_hidden is not None
            else Count("id"),
            visible=Count("id", filter=~hidden) if not show_hidden else Count("id"),
        )
    )
    counts = {status: 0 for status in CandidateStatus.values}
    counts[ALL] = 0
    for row in rows:
        counts[row["status"]] = row["n"]
        counts[ALL] += row["visible"]
    return counts, set()


def candidate_for_review(*, user, candidate_id: int) -> LearningCandidate:
    """One candidate with its evidence runs, their steps and feedback, in a fixed
    number of queries. DoesNotExist outside the user's namespaces."""
    evidence = (
        CandidateEvidence.objects.select_related("trajectory", "reflection")
        .prefetch_related(
            Prefetch("trajectory__steps", queryset=Step.objects.order_by("index")),
            Prefetch(
                "trajectory__feedback",
                queryset=Feedback.objects.order_by("created_at", "id"),
            ),
        )
        .order_by("created_at", "id")
    )
    return (
        reviewable_candidates(user=user)
        .select_related(
            "namespace",
            "playbook",
            "skill",
            "leased_by",
            "reflection",
            "superseded_by",
            "replaces_strategy",
        )
        .prefetch_related(Prefetch("evidence", queryset=evidence))
        .get(pk=candidate_id)
    )


def candidate_history(*, candidate: LearningCandidate) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(candidate=candidate).order_by("created_at", "id")


def candidate_findings(*, candidate: LearningCandidate) -> list[dict]:
    """Every audit finding with the items it names resolved against their current
    state (see `_resolve_related`): what the console lists under "Audit findings"."""
    audit = candidate.audit or {}
    findings = [
        {
            "audit": name,
            **finding,
            "related": [dict(r) for r in finding.get("related") or []],
        }
        for name in ("hygiene", "conflict", "duplicate")
        for finding in (audit.get(name) or [])
    ]
    _resolve_related(candidate, [r for f in findings for r in f["related"]])
    return findings


def conflict_items(*, candidate: LearningCandidate) -> list[dict]:
    """The curated items the audit says this candidate contradicts, with the live text
    of each strategy (so the console shows both side by side)."""
    findings = ((candidate.audit or {}).get("conflict")) or []
    related = []
    for finding in findings:
        for item in finding.get("related") or []:
            related.append(
                {
                    **item,
                    "severity": finding.get("severity", ""),
                    "message": finding.get("message", ""),
                }
            )
    _resolve_related(candidate, related)
    return related


def _resolve_related(candidate: LearningCandidate, related: list[dict]) -> None:
    """Attach to each named item its live object (one query per type named), whether
    it can be replaced, and `stale`: what changed since the audit named it (a
    candidate decided, a strategy retired), so the console never repeats old text as
    if it were current."""
    from playbooks.models import Memory, Strategy

    def ids(kind):
        return _ints(r.get("id") for r in related if r.get("type") == kind)

    loaders = {
        "strategy": lambda pks: Strategy.objects.filter(
            pk__in=pks, playbook__namespace=candidate.namespace
        ).select_related("playbook"),
        "memory": lambda pks: Memory.objects.filter(
            pk__in=pks, namespace=candidate.namespace
        ),
        "candidate": lambda pks: LearningCandidate.objects.filter(
            pk__in=pks, namespace=candidate.namespace
        ).only("pk", "status", "content", "decided_by", "namespace_id"),
    }
    objects = {}
    for kind, load in loaders.items():
        pks = ids(kind)
        objects[kind] = load(pks).in_bulk() if pks else {}
    for item in related:
        kind = item.get("type")
        obj = objects.get(kind, {}).get(_int(item.get("id")))
        item["object"] = obj
        item["stale"] = _stale_note(kind, obj)
        item["replaceable"] = kind == "strategy" and obj is not None and obj.active


def _stale_note(kind, obj) -> str:
    if obj is None:
        return "no longer exists" if kind in ("strategy", "memory", "candidate") else ""
    if kind == "candidate" and obj.status != CandidateStatus.PENDING:
        who = f" by {obj.decided_by}" if obj.decided_by else ""
        return f"{obj.status} since{who}"
    if kind in ("strategy", "memory") and not obj.active:
        return "retired since"
    return ""


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _ints(values):
    return [v for v in (_int(v) for v in values) if v is not None]


def queue_neighbours(*, user, candidate: LearningCandidate, now=None) -> dict:
    """The next pending candidate after this one in queue order (for "next"), leaving
    out those another reviewer holds an unexpired lease on."""
    now = now or timezone.now()
    pending = (
        reviewable_candidates(user=user)
        .filter(status=CandidateStatus.PENDING, below_floor=False)
        .exclude(pk=candidate.pk)
        .filter(
            Q(leased_by__isnull=True)
            | Q(leased_by=user)
            | Q(lease_until__isnull=True)
            | Q(lease_until__lte=now)
        )
    )
    nxt = (
        pending.filter(
            Q(created_at__lt=candidate.created_at)
            | Q(created_at=candidate.created_at, pk__lt=candidate.pk)
        )
        .order_by("-created_at", "-id")
        .values_list("pk", flat=True)
        .first()
    )
    if nxt is None:
        nxt = (
            pending.order_by("-created_at", "-id").values_list("pk", flat=True).first()
        )
    return {"next": nxt}


def candidate_row(*, user, candidate_id: int) -> LearningCandidate:
    """One candidate as a queue row shows it (no evidence): what an action answers
    with. DoesNotExist outside the user's namespaces."""
    return (
        reviewable_candidates(user=user)
        .select_related("namespace", "playbook", "skill", "leased_by")
        .get(pk=candidate_id)
    )


def _sign(candidate) -> int:
    return -1 if candidate.polarity == "avoid" else 1


def _group_key(candidate) -> tuple:
    return (
        candidate.namespace_id,
        candidate.kind,
        candidate.playbook_id,
        candidate.skill_id,
        candidate.memory_scope,
        candidate.user_id,
    )


def lessons_alike(leader, row) -> bool:
    """Whether `row` belongs in `leader`'s group: same kind and target, and
    `is_near_duplicate` — the one "same lesson" rule (the queue groups by it; a group
    decision decides only the members it still holds for)."""
    from learning.text.similarity import is_near_duplicate

    return _group_key(leader) == _group_key(row) and is_near_duplicate(
        leader.content, row.content, a_sign=_sign(leader), b_sign=_sign(row)
    )


def queue_groups(rows) -> list[tuple[LearningCandidate, list[LearningCandidate]]]:
    """The page's rows with near-identical pending lessons grouped under the first
    (newest) of them (`lessons_alike`). Decided rows stay alone. Returns
    [(leader, [members])] in order."""
    groups: list[tuple[LearningCandidate, list]] = []
    open_leaders: dict[tuple, list[int]] = {}
    for row in rows:
        if row.status != CandidateStatus.PENDING:
            groups.append((row, []))
            continue
        key = _group_key(row)
        for index in open_leaders.get(key, []):
            if lessons_alike(groups[index][0], row):
                groups[index][1].append(row)
                break
        else:
            open_leaders.setdefault(key, []).append(len(groups))
            groups.append((row, []))
    return groups


# --- Runs ---------------------------------------------------------------------------


def run_browser(*, user, params) -> tuple[RunFilter, QuerySet[Trajectory]]:
    base = Trajectory.objects.filter(namespace__in=user_namespaces(user))
    namespace = (params.get("namespace") or "").strip()
    if namespace:
        base = base.filter(namespace__slug=namespace)
    filterset = RunFilter(clean_params(params), queryset=base)
    qs = filterset.qs if filterset.is_valid() else base.none()
    qs = (
        qs.select_related("namespace")
        .annotate(step_count=run_step_count())
        .order_by("-created_at", "-id")
    )
    return filterset, qs


def run_for_review(*, user, run_id) -> Trajectory:
    return (
        Trajectory.objects.filter(namespace__in=user_namespaces(user))
        .select_related("namespace")
        .prefetch_related(
            Prefetch("steps", queryset=Step.objects.order_by("index")),
            Prefetch(
                "feedback", queryset=Feedback.objects.order_by("created_at", "id")
            ),
            "reflections",
            Prefetch(
                "candidate_evidence",
                queryset=CandidateEvidence.objects.select_related("candidate").order_by(
                    "id"
                ),
            ),
        )
        .get(pk=run_id)
    )


# --- Activity -----------------------------------------------------------------------

ACTIVITY_FILTERS = ("namespace", "actor", "action", "candidate", "target_type")


def activity_events(*, user, params) -> QuerySet[AuditEvent]:
    qs = AuditEvent.objects.filter(namespace__in=user_namespaces(user)).select_related(
        "namespace", "candidate"
    )
    if params.get("namespace"):
        qs = qs.filter(namespace__slug=params["namespace"])
    if params.get("actor"):
        qs = qs.filter(actor__icontains=params["actor"].strip())
    if params.get("action"):
        qs = qs.filter(action=params["action"])
    if params.get("target_type"):
        qs = qs.filter(target_type=params["target_type"])
    candidate = _int(params.get("candidate"))
    if candidate is not None:
        qs = qs.filter(candidate_id=candidate)
    return qs.order_by("-created_at", "-id")


def activity_actions(*, user) -> list[str]:
    return list(
        AuditEvent.objects.filter(namespace__in=user_namespaces(user))
        .order_by("action")
        .values_list("action", flat=True)
        .distinct()
    )


# --- Dashboard ----------------------------------------------------------------------

AGE_BUCKETS = (
    ("< 1 h", timedelta(hours=1)),
    ("1–24 h", timedelta(hours=24)),
    ("1–7 d", timedelta(days=7)),
    ("> 7 d", None),
)


def queue_health(*, user, now=None) -> dict:
    """Pending candidates by age bucket and kind, in one grouped query."""
    now = now or timezone.now()
    pending = reviewable_candidates(user=user).filter(
        status=CandidateStatus.PENDING, below_floor=False
    )
    aggregates = {}
    lower = None
    for i, (label, upper) in enumerate(AGE_BUCKETS):
        condition = Q()
        if upper is not None:
            condition &= Q(created_at__gt=now - upper)
        if lower is not None:
            condition &= Q(created_at__lte=now - lower)
        for kind in CandidateKind.values:
            aggregates[f"b{i}_{kind}"] = Count("id", filter=condition & Q(kind=kind))
        lower = upper
    totals = pending.aggregate(**aggregates)
    buckets = []
    for i, (label, _) in enumerate(AGE_BUCKETS):
        by_kind = {kind: totals[f"b{i}_{kind}"] or 0 for kind in CandidateKind.values}
        buckets.append(
            {"label": label, "by_kind": by_kind, "total": sum(by_kind.values())}
        )
    return {"buckets": buckets, "total": sum(b["total"] for b in buckets)}


def decisions_per_day(*, user, days: int = 14, now=None) -> list[dict]:
    """Review decisions (approve/deny/conflict) per day over the last `days`."""
    now = now or timezone.now()
    start = (now - timedelta(days=days - 1)).date()
    rows = (
        AuditEvent.objects.filter(
            namespace__in=user_namespaces(user),
            action__in=["approve", "deny", "conflict"],
            created_at__date__gte=start,
        )
        .annotate(day=TruncDate("created_at"))
        .values("day", "action")
        .annotate(n=Count("id"))
    )
    table = {
        start + timedelta(days=i): {"approve": 0, "deny": 0, "conflict": 0}
        for i in range(days)
    }
    for row in rows:
        if row["day"] in table:
            table[row["day"]][row["action"]] = row["n"]
    return [{"day": day, **counts} for day, counts in sorted(table.items())]


def learning_curves(*, user, days: int = 30, top: int = 5, now=None) -> dict:
    """Success rate of finished runs over time per task type (the `top` busiest types):
    per day over the last `days`; when the runs span fewer than three days (an import,
    a fresh install) per tenth of each task type's runs in the order they ran instead,
    so the curve still shows whether later runs do better than earlier ones.
    Returns {"mode": "day"|"order", "slots": [label, ...],
    "series": {task_type: {slot: (ok, n)}}, "volume": {task_type: n}}."""
    now = now or timezone.now()
    start = (now - timedelta(days=days - 1)).date()
    finished = Trajectory.objects.filter(
        namespace__in=user_namespaces(user),
        created_at__date__gte=start,
        status__in=[RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.PARTIAL],
    ).exclude(task_type="")
    rows = list(
        finished.annotate(day=TruncDate("created_at"))
        .values("task_type", "day")
        .annotate(n=Count("id"), ok=Count("id", filter=Q(status=RunStatus.SUCCESS)))
    )
    volume: dict[str, int] = {}
    for row in rows:
        volume[row["task_type"]] = volume.get(row["task_type"], 0) + row["n"]
    types = sorted(volume, key=lambda t: (-volume[t], t))[:top]
    series = {t: {} for t in types}
    if len({row["day"] for row in rows}) >= 3:
        slots = [(start + timedelta(days=d)).strftime("%b %d") for d in range(days)]
        for row in rows:
            if row["task_type"] in series:
                slot = (row["day"] - start).days
                series[row["task_type"]][slot] = (row["ok"], row["n"])
        return {"mode": "day", "slots": slots, "series": series, "volume": volume}
    for task_type, bucket, n, ok in _run_order_tenths(
        finished.filter(task_type__in=types)
    ):
        series[task_type][bucket - 1] = (ok, n)
    slots = [f"{i * 10}–{(i + 1) * 10}%" for i in range(10)]
    return {"mode": "order", "slots": slots, "series": series, "volume": volume}


def _run_order_tenths(runs: QuerySet) -> list[tuple]:
    """(task_type, tenth 1–10, runs, successes) with the runs of each task type split
    into tenths by the order they ran (ntile in SQL; one row per tenth comes back)."""
    from django.db import connection
    from django.db.models import F, Window
    from django.db.models.functions import Ntile

    inner = (
        runs.annotate(
            tenth=Window(
                Ntile(10),
                partition_by=[F("task_type")],
                order_by=[F("created_at").asc(), F("id").asc()],
            )
        )
        .order_by()
        .values("task_type", "status", "tenth")
    )
    try:
        sql, params = inner.query.sql_with_params()
    except EmptyResultSet:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.task_type, t.tenth, COUNT(*), "
            "SUM(CASE WHEN t.status = %s THEN 1 ELSE 0 END) "
            f"FROM ({sql}) AS t GROUP BY t.task_type, t.tenth",
            [RunStatus.SUCCESS.value, *params],
        )
        return cursor.fetchall()


def user_namespace_choices(*, user) -> list[Namespace]:
    return list(user_namespaces(user).order_by("slug"))


# --- Progress, agreement, reasons -------------------------------------------------------

DECISION_ACTIONS = ("approve", "deny", "conflict")


def _decisions(user):
    return AuditEvent.objects.filter(
        namespace__in=user_namespaces(user), action__in=DECISION_ACTIONS
    )


def review_progress(*, user, now=None) -> dict:
    """Decided today (since local midnight), per reviewer today and over 7 days, and
    how often two reviewers who decided the same candidate (possible after a reopen)
    agreed. Three grouped queries."""
    now = now or timezone.now()
    midnight = timezone.localtime(now).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    week = _decisions(user).filter(created_at__gte=now - timedelta(days=7))
    by_actor = list(
        week.values("actor")
        .annotate(
            today=Count("id", filter=Q(created_at__gte=midnight)),
            week=Count("id"),
            approve=Count("id", filter=Q(action="approve")),
            deny=Count("id", filter=Q(action="deny")),
            conflict=Count("id", filter=Q(action="conflict")),
        )
        .order_by("-today", "-week", "actor")
    )
    return {
        "today": sum(row["today"] for row in by_actor),
        "reviewers": by_actor,
        "agreement": decision_agreement(user=user),
    }


def decision_agreement(*, user) -> dict:
    """Over candidates that two or more reviewers decided (one after a reopen), each
    pair of consecutive decisions by different reviewers: how many agree (the same
    decision). Returns {"pairs", "agreed", "rate" (None without pairs),
    "disagreements": [(candidate_id, actor, action, actor, action)] (the last 10)}."""
    decisions = _decisions(user).exclude(candidate_id__isnull=True)
    shared = (
        decisions.values("candidate_id")
        .annotate(actors=Count("actor", distinct=True))
        .filter(actors__gte=2)
        .values("candidate_id")
    )
    rows = (
        decisions.filter(candidate_id__in=shared)
        .order_by("candidate_id", "created_at", "id")
        .values_list("candidate_id", "actor", "action")
    )
    pairs = agreed = 0
    disagreements = []
    last = {}
    for candidate_id, actor, action in rows:
        previous = last.get(candidate_id)
        if previous is not None and previous[0] != actor:
            pairs += 1
            if previous[1] == action:
                agreed += 1
            else:
                disagreements.append((candidate_id, *previous, actor, action))
        last[candidate_id] = (actor, action)
    return {
        "pairs": pairs,
        "agreed": agreed,
        "rate": (agreed / pairs) if pairs else None,
        "disagreements": disagreements[-10:],
    }


def decision_labels_counts(*, user, days: int = 30, now=None) -> dict:
    """Denials per canned reason (and typed ones) and decisions per tag over the last
    `days`: the reflector's recurring faults. Two grouped queries and one lookup."""
    from review.models import CannedReason, ReviewTag

    now = now or timezone.now()
    since = now - timedelta(days=days)
    denials = _decisions(user).filter(action="deny", created_at__gte=since)
    by_reason = {
        row["reason"]: row["n"]
        for row in denials.annotate(reason=KT("data__reason"))
        .values("reason")
        .annotate(n=Count("id"))
    }
    typed = sum(n for reason, n in by_reason.items() if not reason)
    texts = CannedReason.objects.filter(
        pk__in=_ints(r for r in by_reason if r)
    ).in_bulk()
    reasons = sorted(
        (
            {"reason": texts[int(r)], "n": n}
            for r, n in by_reason.items()
            if r and _int(r) in texts
        ),
        key=lambda row: -row["n"],
    )
    tags = list(
        ReviewTag.objects.filter(namespace__in=user_namespaces(user))
        .annotate(n=Count("events", filter=Q(events__created_at__gte=since)))
        .select_related("namespace")
        .order_by("-n", "slug")
    )
    return {"reasons": reasons, "typed": typed, "tags": tags, "days": days}


def activity_versions(*, events) -> dict:
    """The playbook versions that the page's `playbook_*` events made, in one query:
    {event id: PlaybookVersion} (the activity page shows their diff and links)."""
    from functools import reduce
    from operator import or_

    from playbooks.models import PlaybookVersion

    wanted = {}
    for ev in events:
        number = _int((ev.data or {}).get("version"))
        if ev.target_type == "playbook" and number:
            wanted[ev.pk] = (ev.namespace_id, ev.target_id, number)
    if not wanted:
        return {}
    query = reduce(
        or_,
        (
            Q(playbook__namespace_id=ns, playbook__slug=slug, number=number)
            for ns, slug, number in set(wanted.values())
        ),
    )
    found = {
        (v.playbook.namespace_id, v.playbook.slug, v.number): v
        for v in PlaybookVersion.objects.filter(query).select_related("playbook")
    }
    return {pk: found[key] for pk, key in wanted.items() if key in found}


# --- Memories -----------------------------------------------------------------------


def memory_browser(*, user, params):
    """Memories of the user's namespaces filtered by `MemoryFilter` (plus a namespace
    slug), newest-important first."""
    from playbooks.filters import MemoryFilter
    from playbooks.models import Memory

    base = Memory.objects.filter(namespace__in=user_namespaces(user))
    namespace = (params.get("namespace") or "").strip()
    if namespace:
        base = base.filter(namespace__slug=namespace)
    filterset = MemoryFilter(clean_params(params), queryset=base)
    qs = filterset.qs if filterset.is_valid() else base.none()
    qs = qs.select_related("namespace", "source_candidate", "consolidated_into")
    return filterset, qs.order_by("-importance", "-created_at", "-id")


def memory_for_review(*, user, memory_id: int):
    from playbooks.models import Memory

    return (
        Memory.objects.filter(namespace__in=user_namespaces(user))
        .select_related("namespace", "source_candidate", "consolidated_into")
        .get(pk=memory_id)
    )


def memory_history(*, memory) -> dict:
    """What happened to a memory: the candidate it came from (and that candidate's
    trail), its hand edits and retirement, and the memories consolidated into it."""
    events = AuditEvent.objects.filter(
        namespace_id=memory.namespace_id, target_type="memory", target_id=str(memory.pk)
    )
    if memory.source_candidate_id:
        events = events | AuditEvent.objects.filter(
            candidate_id=memory.source_candidate_id
        )
    return {
        "events": events.order_by("created_at", "id"),
        "sources": list(memory.sources.order_by("created_at", "id")),
    }
