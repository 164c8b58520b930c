"""One candidate: the evidence view, the lease, the review actions, edit, reopen and
undo, and the recall preview."""

import json
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from learning.models import (
    SHAPED_KINDS,
    CandidateStatus,
    LearningCandidate,
    Severity,
)
from learning.permissions import console_action_required, user_allows
from playbooks.forms import RecallPreviewForm
from playbooks.recall import DEFAULT_BUDGET
from review import selectors, services
from review.forms import (
    ApproveForm,
    CandidateEditForm,
    DenyForm,
    DismissFindingForm,
    NoteForm,
    UndoForm,
)
from review.models import Guideline
from review.presenters import apply_preview, candidate_shape, recall_comparison
from review.views.common import (
    CONFLICT_STATUS,
    actor_of,
    candidate_get,
    guidance_for,
    is_partial,
    reviewer_required,
    safe_next,
)
from review.views.queue import status_tabs

reopen_required = console_action_required("candidates.reopen")
OPEN = (CandidateStatus.PENDING, CandidateStatus.APPLY_FAILED)


def _recall_task(candidate) -> str:
    """A task to preview recall with: the first evidence run's, else the lesson's
    situation or task type."""
    for ev in candidate.evidence.all():
        if ev.trajectory.task_description:
            return ev.trajectory.task_description[:300]
    return candidate.when or candidate.task_type.replace(".", " ")


def _candidate_context(request, candidate, **extra) -> dict:
    now = timezone.now()
    held_by_other = bool(
        candidate.leased_by_id
        and candidate.leased_by_id != request.user.pk
        and candidate.lease_until
        and candidate.lease_until > now
    )
    is_admin = user_allows(request.user, candidate.namespace, "candidates.override")
    open_ = candidate.status in OPEN
    conflicts = selectors.conflict_items(candidate=candidate)
    for item in conflicts:
        if open_ and item["replaceable"]:
            # What "approve as replacement" would do: the same preview, replacing it.
            item["preview"] = apply_preview(candidate, replaces=item["object"].pk)
    previewable = candidate.kind in SHAPED_KINDS and candidate.playbook_id is not None
    context = {
        "c": candidate,
        "now": now,
        "held_by_other": held_by_other,
        "findings": selectors.candidate_findings(candidate=candidate),
        "conflicts": conflicts,
        "blocked": candidate.max_severity == Severity.BLOCK,
        "is_admin": is_admin,
        "is_open": open_,
        "can_reopen": candidate.status in services.REOPENABLE_STATUSES
        and user_allows(request.user, candidate.namespace, "candidates.reopen"),
        "lesson": candidate_shape(candidate),
        "shaped": candidate.kind in SHAPED_KINDS,
        "history": selectors.candidate_history(candidate=candidate),
        "preview": apply_preview(candidate) if open_ else {},
        "edit_form": CandidateEditForm(candidate=candidate) if open_ else None,
        "neighbours": selectors.queue_neighbours(
            user=request.user, candidate=candidate, now=now
        ),
        "lease_seconds": settings.FLYWHEEL_LEASE_SECONDS,
        "queue_url": safe_next(request, reverse("review:queue")),
        "guideline": Guideline.objects.filter(namespace=candidate.namespace).first(),
        "guidance": guidance_for([candidate.namespace]),
        "recall_previewable": previewable,
        "recall_form": RecallPreviewForm(
            initial={
                "task": _recall_task(candidate),
                "task_type": candidate.task_type,
                "budget_tokens": DEFAULT_BUDGET,
            }
        )
        if previewable
        else None,
    }
    context.update(extra)
    return context


@require_GET
@reviewer_required
def candidate_detail(request, pk: int):
    candidate = candidate_get(request, pk)
    until = services.candidate_lease(
        namespace=candidate.namespace, candidate_id=candidate.pk, user=request.user
    )
    if until is not None:
        candidate.leased_by, candidate.lease_until = request.user, until
    context = _candidate_context(request, candidate)
    if is_partial(request):
        return render(request, "review/candidate.html#candidate", context)
    return render(request, "review/candidate.html", context)


@require_GET
@reviewer_required
def candidate_recall(request, pk: int):
    """The recall preview for a task: the current version and with this candidate
    applied (a fragment for htmx; the whole page without JavaScript)."""
    candidate = candidate_get(request, pk)
    form = RecallPreviewForm(request.GET)
    context = {"c": candidate, "recall_form": form}
    status = 200
    if candidate.kind not in SHAPED_KINDS or candidate.playbook_id is None:
        context["recall_error"] = "Only a playbook lesson has a recall preview."
    elif not form.is_valid():
        context["recall_error"] = "; ".join(
            f"{k}: {e}" for k, errs in form.errors.items() for e in errs
        )
        status = 400
    elif (form.cleaned_data["task"] or "").strip():
        context["recall"] = recall_comparison(
            playbook=candidate.playbook,
            task=form.cleaned_data["task"],
            task_type=form.cleaned_data["task_type"] or "",
            budget_tokens=form.cleaned_data["budget_tokens"] or DEFAULT_BUDGET,
            candidate=candidate,
        )
    if is_partial(request):
        return render(
            request, "review/candidate.html#recall-preview", context, status=status
        )
    full = _candidate_context(request, candidate, **context)
    full["recall_form"] = form
    return render(request, "review/candidate.html", full, status=status)


@require_POST
@reviewer_required
def candidate_release(request, pk: int):
    candidate = candidate_get(request, pk, light=True)
    services.candidate_release(
        namespace=candidate.namespace, candidate_id=candidate.pk, user=request.user
    )
    if is_partial(request):
        return HttpResponse(status=204)
    messages.info(request, f"Released candidate {pk}.")
    return redirect(safe_next(request, reverse("review:queue")))


def _labels(candidate, data) -> services.DecisionLabels:
    return services.decision_labels(
        namespace=candidate.namespace,
        reason_id=data.get("reason"),
        tags=data.get("tags") or (),
    )


def _group(request, candidate, data) -> list[int]:
    """The near-identical candidates to decide with this one: pending, in the same
    namespace, and only those the reviewer may review."""
    ids = [pk for pk in data.get("group") or [] if pk != candidate.pk]
    if not ids:
        return []
    return list(
        selectors.reviewable_candidates(user=request.user)
        .filter(namespace=candidate.namespace, pk__in=ids)
        .values_list("pk", flat=True)
    )


def _outcome_text(pk: int, candidate, verb: str, members: list[int]) -> tuple:
    level = "success"
    text = f"Candidate {pk} {verb}."
    if candidate.status == CandidateStatus.APPLY_FAILED:
        text = f"Candidate {pk} was approved but applying it failed: {candidate.apply_error}"
        level = "warning"
    elif candidate.status == CandidateStatus.APPLIED and candidate.applied_version:
        text = f"Candidate {pk} applied (version {candidate.applied_version})."
    if members:
        text = (
            text[:-1]
            + f", with {len(members)} near-identical candidate"
            + ("s" if len(members) > 1 else "")
            + f" ({', '.join(f'#{m}' for m in members)})."
        )
    return level, text


def _act(request, pk: int, form_class, decision: str, verb: str):
    """Run one review action (on the candidate, or on its group of near-identical
    ones) and answer with the fragment the request came from: a queue row
    (`#cand-<id>`), the candidate panel (htmx), or a redirect (plain POST)."""
    candidate = candidate_get(request, pk, light=True)
    form = form_class(request.POST)
    status, level, decided, result = 200, "success", [], None
    if not form.is_valid():
        text = "; ".join(e for errs in form.errors.values() for e in errs)
        status, level = 400, "error"
    else:
        data = form.cleaned_data
        try:
            labels = _labels(candidate, data)
            candidate, members = services.candidates_group_decide(
                namespace=candidate.namespace,
                leader_id=candidate.pk,
                member_ids=_group(request, candidate, data),
                actor=actor_of(request, candidate),
                decision=decision,
                note=data.get("note") or "",
                override=data.get("override", False),
                labels=labels,
                replace_strategy_id=data.get("replace_strategy"),
            )
        except services.ReviewError as exc:
            text, level = str(exc), "error"
            status = CONFLICT_STATUS.get(type(exc), 400)
        else:
            level, text = _outcome_text(pk, candidate, verb, members)
            decided, result = [candidate.pk, *members], candidate
    return _decision_response(
        request, pk, toasts=[(level, text)], status=status, decided=decided, row=result
    )


def _decision_response(request, pk, *, toasts, status, decided, row=None):
    """After a decision (or its undo): the row, the candidate panel or a redirect;
    an `fw:decided` event names what can be undone. `row`: the candidate as the
    action left it (a queue row needs nothing more), else it is read again."""
    if is_partial(request):
        target = request.htmx.target or ""
        if target.startswith("cand-"):
            candidate = row or selectors.candidate_row(
                user=request.user, candidate_id=pk
            )
            response = _row_response(
                request, candidate, toasts, status, undo_ids=decided
            )
        else:
            candidate = candidate_get(request, pk)
            context = _candidate_context(
                request, candidate, toasts=toasts, undo_ids=decided
            )
            response = render(
                request, "review/candidate.html#candidate", context, status=status
            )
        if decided:
            response["HX-Trigger"] = json.dumps({"fw:decided": {"ids": decided}})
        return response
    level, text = toasts[0]
    getattr(messages, level)(request, text)
    return redirect(safe_next(request, reverse("review:candidate", args=[pk])))


def _row_response(request, candidate, toasts, status, undo_ids=()):
    """A queue row after an action, with the status counts and the "all N matching"
    count of the page it sits on (from HX-Current-URL) swapped out of band: one row
    and two counters, never the whole list."""
    query = urlsplit(request.htmx.current_url or "").query
    params = QueryDict(query)
    tally = selectors.queue_counts(user=request.user, params=params)
    counts, capped, current = tally.counts, tally.capped, tally.current
    context = {
        "c": candidate,
        "members": [],
        "now": timezone.now(),
        "me": request.user,
        "row_toasts": toasts,
        "row_tabs": True,
        "undo_ids": list(undo_ids),
        "tab_query": params,
        "current_status": current,
        "status_tabs": status_tabs(counts, capped),
        "match_count": counts.get(current, 0),
        "match_capped": current in capped,
    }
    return render(request, "review/queue.html#queue-row", context, status=status)


@require_POST
@reviewer_required
def candidate_approve(request, pk: int):
    return _act(request, pk, ApproveForm, "approve", "approved")


@require_POST
@reviewer_required
def candidate_deny(request, pk: int):
    return _act(request, pk, DenyForm, "deny", "denied")


@require_POST
@reviewer_required
def candidate_conflict(request, pk: int):
    return _act(request, pk, NoteForm, "conflict", "marked conflicted")


@require_POST
@reopen_required
def candidate_reopen(request, pk: int):
    """Put a decided candidate back in the queue (an applied one is reverted with a
    new version first)."""
    candidate = candidate_get(request, pk, light=True)
    if not user_allows(request.user, candidate.namespace, "candidates.reopen"):
        raise Http404("No such candidate in your namespaces.")
    status, level = 200, "success"
    try:
        services.candidate_reopen(
            namespace=candidate.namespace,
            candidate_id=candidate.pk,
            actor=actor_of(request, candidate),
            note=(request.POST.get("note") or "")[:4000],
        )
    except services.ReviewError as exc:
        status, level, text = CONFLICT_STATUS.get(type(exc), 400), "error", str(exc)
    else:
        text = f"Candidate {pk} is pending again."
    return _decision_response(
        request, pk, toasts=[(level, text)], status=status, decided=[]
    )


@require_POST
@reviewer_required
def candidates_undo(request):
    """Undo the reviewer's last decision (one candidate, a group or a bulk decision)
    within a few seconds of it: back to pending, an applied one reverted."""
    form = UndoForm(request.POST)
    back = safe_next(request, reverse("review:queue"))
    if not form.is_valid():
        text = "; ".join(e for errs in form.errors.values() for e in errs)
        return _undo_response(request, [], [("error", text)], back, status=400)
    ids = list(
        selectors.reviewable_candidates(user=request.user)
        .filter(pk__in=form.cleaned_data["ids"])
        .values_list("pk", flat=True)
    )
    outcome = services.candidates_undo(
        candidate_ids=ids,
        actor=services.Actor(label=request.user.get_username()),
    )
    level = "success" if outcome.reopened and not outcome.skipped else "warning"
    return _undo_response(request, ids, [(level, outcome.summary())], back)


def _undo_response(request, ids, toasts, back, status=200):
    if is_partial(request):
        target = request.htmx.target or ""
        if target.startswith("cand-") and target[5:].isdigit():
            pk = int(target[5:])
            try:
                candidate = selectors.candidate_row(user=request.user, candidate_id=pk)
            except LearningCandidate.DoesNotExist:
                raise Http404("No such candidate in your namespaces.")
            return _row_response(request, candidate, toasts, status)
        if target == "candidate" and len(ids) == 1:
            candidate = candidate_get(request, ids[0])
            context = _candidate_context(request, candidate, toasts=toasts)
            return render(
                request, "review/candidate.html#candidate", context, status=status
            )
        from review.views.queue import queue_results_response

        return queue_results_response(request, toasts=toasts, status=status)
    level, text = toasts[0]
    getattr(messages, level)(request, text)
    return redirect(back)


@require_POST
@console_action_required("findings.dismiss")
def candidate_finding_dismiss(request, pk: int, finding_id: str):
    """Dismiss one audit finding with a reason (the small form of `_finding.html`)."""
    candidate = candidate_get(request, pk, light=True)
    form = DismissFindingForm(request.POST)
    status, level, text = 200, "success", f"Candidate {pk} had a finding dismissed."
    if not form.is_valid():
        text = "; ".join(e for errs in form.errors.values() for e in errs)
        status, level = 400, "error"
    else:
        try:
            services.candidate_finding_dismiss(
                namespace=candidate.namespace,
                candidate_id=candidate.pk,
                finding_id=finding_id,
                actor=actor_of(request, candidate),
                reason=form.cleaned_data["reason"],
            )
        except services.ReviewError as exc:
            text, level = str(exc), "error"
            status = CONFLICT_STATUS.get(type(exc), 400)
    return _decision_response(
        request, pk, toasts=[(level, text)], status=status, decided=[]
    )


@require_POST
@reviewer_required
def candidate_edit(request, pk: int):
    candidate = candidate_get(request, pk)
    form = CandidateEditForm(request.POST, candidate=candidate)
    status, level, text = 200, "success", f"Candidate {pk} edited."
    if form.is_valid():
        try:
            services.candidate_edit(
                namespace=candidate.namespace,
                candidate_id=candidate.pk,
                actor=actor_of(request, candidate),
                changes=form.changes(),
                note=form.cleaned_data["note"],
            )
        except services.ReviewError as exc:
            status, level, text = CONFLICT_STATUS.get(type(exc), 400), "error", str(exc)
        candidate = candidate_get(request, pk)
        edit_form = None
    else:
        status, level = 400, "error"
        text = "; ".join(f"{k}: {e}" for k, errs in form.errors.items() for e in errs)
        edit_form = form
    if is_partial(request):
        context = _candidate_context(request, candidate, toasts=[(level, text)])
        if edit_form is not None:
            context["edit_form"], context["edit_open"] = edit_form, True
        return render(
            request, "review/candidate.html#candidate", context, status=status
        )
    getattr(messages, level)(request, text)
    return redirect(reverse("review:candidate", args=[pk]))
