"""The reviewer console: thin views over review.selectors (reads) and review.services
(actions). Every action is a plain form POST that htmx speeds up; permissions are
checked here, per namespace, never in templates."""

from django.conf import settings
from django.contrib import messages
from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
from django.http import Http404, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from learning.models import (
    CandidateKind,
    CandidateStatus,
    LearningCandidate,
    RunStatus,
    Severity,
    Trajectory,
)
from learning.permissions import console_action_required, user_allows
from review import charts, selectors, services
from review.forms import (
    ApproveForm,
    BulkForm,
    CandidateEditForm,
    DenyForm,
    NoteForm,
)

reviewer_required = console_action_required("candidates.review")
QUEUE_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
CONFLICT_STATUS = {
    services.AlreadyDecided: 409,
    services.NeedsOverride: 403,
    services.NoteRequired: 400,
}


class _OpenPage(Page):
    def __init__(self, object_list, number, paginator, has_more: bool):
        super().__init__(object_list, number, paginator)
        self.has_more = has_more

    def has_next(self) -> bool:
        return self.has_more

    def end_index(self) -> int:
        return (self.number - 1) * self.paginator.per_page + len(self.object_list)


class QueuePaginator(Paginator):
    """Pages with a count the caller already has (the status tabs count the current
    filter): no extra COUNT query. Over the tabs' cap the count is unknown, so the
    pages are open-ended: one extra row tells whether there is a next page."""

    def __init__(self, object_list, per_page, *, count: int, capped: bool):
        super().__init__(object_list, per_page)
        self._known_count, self.capped, self.cap = count, capped, count

    @cached_property
    def count(self) -> int:
        return self._known_count

    def validate_number(self, number):
        if not self.capped:
            return super().validate_number(number)
        try:
            number = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger("That page number is not an integer")
        if number < 1:
            raise EmptyPage("That page number is less than 1")
        return number

    def page(self, number):
        if not self.capped:
            return super().page(number)
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        rows = list(self.object_list[bottom : bottom + self.per_page + 1])
        return _OpenPage(rows[: self.per_page], number, self, len(rows) > self.per_page)


def _page(request, qs, per_page: int, params=None, **paginator_kwargs):
    params = request.GET if params is None else params
    try:
        per_page = max(1, min(int(params.get("per_page", per_page)), MAX_PAGE_SIZE))
    except (TypeError, ValueError):
        pass
    if paginator_kwargs:
        paginator = QueuePaginator(qs, per_page, **paginator_kwargs)
    else:
        paginator = Paginator(qs, per_page)
    return paginator.get_page(params.get("page"))


def _actor(request, candidate) -> services.Actor:
    return services.Actor(
        label=request.user.get_username(),
        is_admin=user_allows(request.user, candidate.namespace, "candidates.override"),
    )


def _get_candidate(request, pk: int) -> LearningCandidate:
    try:
        return selectors.candidate_for_review(user=request.user, candidate_id=pk)
    except LearningCandidate.DoesNotExist:
        raise Http404("No such candidate in your namespaces.")


def _safe_next(request, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


def _is_partial(request) -> bool:
    return bool(request.htmx) and not request.htmx.history_restore_request


# --- Queue --------------------------------------------------------------------------


def _status_tabs(counts, capped):
    return [(s, counts[s], s in capped) for s in CandidateStatus.values] + [
        (selectors.ALL, counts[selectors.ALL], selectors.ALL in capped)
    ]


def _queue_context(request, params) -> dict:
    namespaces = selectors.user_namespace_choices(user=request.user)
    queue = selectors.candidate_queue(
        user=request.user, params=params, namespaces=namespaces
    )
    counts, capped = selectors.status_counts(
        candidates=queue.without_status,
        show_hidden=queue.show_hidden,
        narrowed=queue.narrowed,
    )
    current = queue.status[0] if len(queue.status) == 1 else selectors.ALL
    if current in counts and not (len(queue.status) > 1):
        page = _page(
            request,
            queue.candidates,
            QUEUE_PAGE_SIZE,
            params,
            count=counts[current],
            capped=current in capped,
        )
    else:
        page = _page(request, queue.candidates, QUEUE_PAGE_SIZE, params)
    query = params.urlencode() if hasattr(params, "urlencode") else ""
    return {
        "queue": queue,
        "filter": queue.filterset,
        "page": page,
        "counts": counts,
        "current_status": current,
        "status_tabs": _status_tabs(counts, capped),
        "namespaces": namespaces,
        "kinds": CandidateKind.values,
        "severities": ["block", "warn", "info", "none"],
        "query": query,
        "tab_query": params,
        "now": timezone.now(),
        "me": request.user,
        "queue_url": reverse("review:queue") + (f"?{query}" if query else ""),
    }


@require_GET
@reviewer_required
def queue(request):
    context = _queue_context(request, request.GET)
    if _is_partial(request):
        return render(request, "review/queue.html#queue-results", context)
    return render(request, "review/queue.html", context)


@require_POST
@reviewer_required
def candidates_bulk(request):
    form = BulkForm(request.POST)
    query = request.POST.get("query", "")
    back = reverse("review:queue") + (f"?{query}" if query else "")
    if not form.is_valid():
        errors = "; ".join(e for errs in form.errors.values() for e in errs)
        return _bulk_response(
            request, query, back, level="error", text=errors, status=400
        )
    if form.cleaned_data["all_matching"]:
        params = QueryDict(form.cleaned_data["query"], mutable=True)
        ids = selectors.candidate_queue(user=request.user, params=params).candidates
        ids = ids.values_list("pk", flat=True)[: services.BULK_LIMIT + 1]
    else:
        ids = (
            selectors.reviewable_candidates(user=request.user)
            .filter(pk__in=form.cleaned_data["ids"])
            .values_list("pk", flat=True)
        )
    outcome = services.candidates_bulk_decide(
        candidate_ids=list(ids),
        actor=services.Actor(label=request.user.get_username(), is_admin=False),
        decision=form.cleaned_data["decision"],
        note=form.cleaned_data["note"],
    )
    level = "success" if outcome.decided and not outcome.skipped_count else "warning"
    return _bulk_response(request, query, back, level=level, text=outcome.summary())


def _bulk_response(
    request, query: str, back: str, *, level: str, text: str, status=200
):
    if _is_partial(request):
        if status >= 400:
            # Keep the reviewer's selection and note: only the message is added.
            response = render(
                request,
                "review/_toasts.html",
                {"toasts": [(level, text)]},
                status=status,
            )
            response["HX-Reswap"] = "none"
            return response
        context = _queue_context(request, QueryDict(query))
        context["toasts"] = [(level, text)]
        return render(
            request, "review/queue.html#queue-results", context, status=status
        )
    getattr(messages, level)(request, text)
    return redirect(back)


# --- One candidate ------------------------------------------------------------------


def _preview(candidate) -> dict:
    """The diff approving would create (from playbooks.apply once it offers it)."""
    from playbooks import apply

    if candidate.status not in (CandidateStatus.PENDING, CandidateStatus.APPLY_FAILED):
        return {}
    if not hasattr(apply, "candidate_apply_preview"):
        return {"unavailable": True}
    try:
        preview = apply.candidate_apply_preview(candidate=candidate)
    except apply.ApplyFailed as exc:
        return {"error": str(exc)}
    diff = preview.get("diff")
    if isinstance(diff, dict):
        preview["diff_items"] = [
            (cls, _diff_text(item))
            for cls, key in (("add", "added"), ("del", "removed"), ("chg", "changed"))
            for item in diff.get(key) or []
        ]
    if isinstance(diff, str):
        preview["diff_lines"] = [
            (
                "add"
                if line.startswith("+") and not line.startswith("+++")
                else "del"
                if line.startswith("-") and not line.startswith("---")
                else "hunk"
                if line.startswith("@@")
                else "",
                line,
            )
            for line in diff.splitlines()
        ]
    return preview


def _diff_text(item) -> str:
    if not isinstance(item, dict):
        return str(item)
    text = item.get("description") or item.get("content") or item.get("text") or ""
    fields = item.get("fields") or {}
    if fields:
        changes = ", ".join(
            f"{name}: {change.get('from')} → {change.get('to')}"
            if isinstance(change, dict)
            else f"{name}: {change}"
            for name, change in fields.items()
        )
        text = f"{text} ({changes})" if text else changes
    return text or str(item)


def _candidate_context(request, candidate, **extra) -> dict:
    now = timezone.now()
    held_by_other = bool(
        candidate.leased_by_id
        and candidate.leased_by_id != request.user.pk
        and candidate.lease_until
        and candidate.lease_until > now
    )
    audit = candidate.audit or {}
    findings = [
        {"audit": name, **finding}
        for name in ("hygiene", "conflict", "duplicate")
        for finding in (audit.get(name) or [])
    ]
    is_admin = user_allows(request.user, candidate.namespace, "candidates.override")
    open_ = candidate.status in (CandidateStatus.PENDING, CandidateStatus.APPLY_FAILED)
    conflicts = selectors.conflict_items(candidate=candidate)
    for item in conflicts:
        if open_ and item["replaceable"]:
            # What "approve as replacement" would do: the same preview, replacing it.
            saved = candidate.replaces_strategy_id
            candidate.replaces_strategy_id = item["object"].pk
            try:
                item["preview"] = _preview(candidate)
            finally:
                candidate.replaces_strategy_id = saved
    context = {
        "c": candidate,
        "now": now,
        "held_by_other": held_by_other,
        "findings": findings,
        "conflicts": conflicts,
        "blocked": candidate.max_severity == Severity.BLOCK,
        "is_admin": is_admin,
        "is_open": open_,
        "history": selectors.candidate_history(candidate=candidate),
        "preview": _preview(candidate) if open_ else {},
        "edit_form": CandidateEditForm(candidate=candidate) if open_ else None,
        "neighbours": selectors.queue_neighbours(
            user=request.user, candidate=candidate
        ),
        "lease_seconds": settings.FLYWHEEL_LEASE_SECONDS,
        "queue_url": _safe_next(request, reverse("review:queue")),
    }
    context.update(extra)
    return context


@require_GET
@reviewer_required
def candidate_detail(request, pk: int):
    candidate = _get_candidate(request, pk)
    until = services.candidate_lease(
        namespace=candidate.namespace, candidate_id=candidate.pk, user=request.user
    )
    if until is not None:
        candidate.leased_by, candidate.lease_until = request.user, until
    context = _candidate_context(request, candidate)
    if _is_partial(request):
        return render(request, "review/candidate.html#candidate", context)
    return render(request, "review/candidate.html", context)


@require_POST
@reviewer_required
def candidate_release(request, pk: int):
    candidate = _get_candidate(request, pk)
    services.candidate_release(
        namespace=candidate.namespace, candidate_id=candidate.pk, user=request.user
    )
    if _is_partial(request):
        return HttpResponse(status=204)
    messages.info(request, f"Released candidate {pk}.")
    return redirect(_safe_next(request, reverse("review:queue")))


def _act(request, pk: int, form_class, action, verb: str):
    """Run one review action and answer with the fragment the request came from: a
    queue row (`#cand-<id>`), the candidate panel (htmx), or a redirect (plain POST)."""
    candidate = _get_candidate(request, pk)
    form = form_class(request.POST)
    status, level = 200, "success"
    if not form.is_valid():
        text = "; ".join(e for errs in form.errors.values() for e in errs)
        status, level = 400, "error"
    else:
        try:
            candidate = action(candidate, form.cleaned_data, _actor(request, candidate))
        except services.ReviewError as exc:
            text, level = str(exc), "error"
            status = CONFLICT_STATUS.get(type(exc), 400)
        else:
            text = f"Candidate {pk} {verb}."
            if candidate.status == CandidateStatus.APPLY_FAILED:
                text = f"Candidate {pk} was approved but applying it failed: {candidate.apply_error}"
                level = "warning"
            elif (
                candidate.status == CandidateStatus.APPLIED
                and candidate.applied_version
            ):
                text = f"Candidate {pk} applied (version {candidate.applied_version})."
        candidate = _get_candidate(request, pk)
    if _is_partial(request):
        toasts = [(level, text)]
        target = request.htmx.target or ""
        if target.startswith("cand-"):
            return _row_response(request, candidate, toasts, status)
        context = _candidate_context(request, candidate, toasts=toasts)
        return render(
            request, "review/candidate.html#candidate", context, status=status
        )
    getattr(messages, level)(request, text)
    return redirect(_safe_next(request, reverse("review:candidate", args=[pk])))


def _row_response(request, candidate, toasts, status):
    """A queue row after an action, with the status counts of the page it sits on
    (from HX-Current-URL) swapped out of band."""
    from urllib.parse import urlsplit

    query = urlsplit(request.htmx.current_url or "").query
    queue = selectors.candidate_queue(user=request.user, params=QueryDict(query))
    counts, capped = selectors.status_counts(
        candidates=queue.without_status,
        show_hidden=queue.show_hidden,
        narrowed=queue.narrowed,
    )
    context = {
        "c": candidate,
        "now": timezone.now(),
        "me": request.user,
        "selected": True,
        "row_toasts": toasts,
        "row_tabs": True,
        "tab_query": QueryDict(query),
        "current_status": queue.status[0] if len(queue.status) == 1 else selectors.ALL,
        "status_tabs": _status_tabs(counts, capped),
    }
    return render(request, "review/queue.html#queue-row", context, status=status)


def _approve(candidate, data, actor):
    return services.candidate_approve(
        namespace=candidate.namespace,
        candidate_id=candidate.pk,
        actor=actor,
        note=data["note"],
        override=data["override"],
        replace_strategy_id=data["replace_strategy"],
    )


def _deny(candidate, data, actor):
    return services.candidate_deny(
        namespace=candidate.namespace,
        candidate_id=candidate.pk,
        actor=actor,
        note=data["note"],
    )


def _conflict(candidate, data, actor):
    return services.candidate_mark_conflicted(
        namespace=candidate.namespace,
        candidate_id=candidate.pk,
        actor=actor,
        note=data["note"],
    )


@require_POST
@reviewer_required
def candidate_approve(request, pk: int):
    return _act(request, pk, ApproveForm, _approve, "approved")


@require_POST
@reviewer_required
def candidate_deny(request, pk: int):
    return _act(request, pk, DenyForm, _deny, "denied")


@require_POST
@reviewer_required
def candidate_conflict(request, pk: int):
    return _act(request, pk, NoteForm, _conflict, "marked conflicted")


@require_POST
@reviewer_required
def candidate_edit(request, pk: int):
    candidate = _get_candidate(request, pk)
    form = CandidateEditForm(request.POST, candidate=candidate)
    status, level, text = 200, "success", f"Candidate {pk} edited."
    if form.is_valid():
        try:
            services.candidate_edit(
                namespace=candidate.namespace,
                candidate_id=candidate.pk,
                actor=_actor(request, candidate),
                changes=form.changes(),
                note=form.cleaned_data["note"],
            )
        except services.ReviewError as exc:
            status, level, text = CONFLICT_STATUS.get(type(exc), 400), "error", str(exc)
        candidate = _get_candidate(request, pk)
        edit_form = None
    else:
        status, level = 400, "error"
        text = "; ".join(f"{k}: {e}" for k, errs in form.errors.items() for e in errs)
        edit_form = form
    if _is_partial(request):
        context = _candidate_context(request, candidate, toasts=[(level, text)])
        if edit_form is not None:
            context["edit_form"], context["edit_open"] = edit_form, True
        return render(
            request, "review/candidate.html#candidate", context, status=status
        )
    getattr(messages, level)(request, text)
    return redirect(reverse("review:candidate", args=[pk]))


# --- Runs, activity, dashboard ------------------------------------------------------


@require_GET
@reviewer_required
def runs(request):
    filterset, qs = selectors.run_browser(user=request.user, params=request.GET)
    context = {
        "filter": filterset,
        "page": _page(request, qs, 50),
        "namespaces": selectors.user_namespace_choices(user=request.user),
        "run_statuses": RunStatus.values,
    }
    if _is_partial(request):
        return render(request, "review/runs.html#run-results", context)
    return render(request, "review/runs.html", context)


@require_GET
@reviewer_required
def run_detail(request, pk):
    try:
        run = selectors.run_for_review(user=request.user, run_id=pk)
    except (Trajectory.DoesNotExist, ValueError):
        raise Http404("No such run in your namespaces.")
    highlight = set()
    for part in request.GET.get("hl", "").split(","):
        if part.strip().isdigit():
            highlight.add(int(part))
    return render(
        request, "review/run_detail.html", {"run": run, "highlight": highlight}
    )


@require_GET
@reviewer_required
def activity(request):
    events = selectors.activity_events(user=request.user, params=request.GET)
    context = {
        "page": _page(request, events, 50),
        "namespaces": selectors.user_namespace_choices(user=request.user),
        "actions": selectors.activity_actions(user=request.user),
        "params": request.GET,
    }
    if _is_partial(request):
        return render(request, "review/activity.html#activity-results", context)
    return render(request, "review/activity.html", context)


@require_GET
@reviewer_required
def dashboard(request):
    health = selectors.queue_health(user=request.user)
    decisions = selectors.decisions_per_day(user=request.user, days=14)
    curves = selectors.learning_curves(user=request.user, days=30)
    health_rows = [{"label": b["label"], **b["by_kind"]} for b in health["buckets"]]
    decision_rows = [
        {**row, "label": row["day"].strftime("%b %d")} for row in decisions
    ]
    context = {
        "health": health,
        "health_chart": charts.stacked_bars(
            rows=health_rows,
            keys=CandidateKind.values,
            label_key="label",
            colours=charts.KIND_COLOURS,
        ),
        "decisions": decisions,
        "decisions_chart": charts.stacked_bars(
            rows=decision_rows,
            keys=["approve", "deny", "conflict"],
            label_key="label",
            colours=charts.DECISION_COLOURS,
            label_every=2,
        ),
        "curves": curves,
        "curves_chart": charts.line_chart(
            slots=curves["slots"], series=curves["series"]
        ),
    }
    return render(request, "review/dashboard.html", context)
