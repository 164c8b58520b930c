"""One candidate: the evidence view, the lease, the review actions and edit."""

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from learning.models import (
    CandidateStatus,
    Severity,
)
from learning.permissions import console_action_required, user_allows
from review import selectors, services
from review.forms import (
    ApproveForm,
    CandidateEditForm,
    DenyForm,
    DismissFindingForm,
    NoteForm,
)
from review.presenters import apply_preview
from review.views.common import (
    CONFLICT_STATUS,
    actor_of,
    candidate_get,
    is_partial,
    reviewer_required,
    safe_next,
)
from review.views.queue import status_tabs


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
            item["preview"] = apply_preview(candidate, replaces=item["object"].pk)
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
        "preview": apply_preview(candidate) if open_ else {},
        "edit_form": CandidateEditForm(candidate=candidate) if open_ else None,
        "neighbours": selectors.queue_neighbours(
            user=request.user, candidate=candidate
        ),
        "lease_seconds": settings.FLYWHEEL_LEASE_SECONDS,
        "queue_url": safe_next(request, reverse("review:queue")),
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


@require_POST
@reviewer_required
def candidate_release(request, pk: int):
    candidate = candidate_get(request, pk)
    services.candidate_release(
        namespace=candidate.namespace, candidate_id=candidate.pk, user=request.user
    )
    if is_partial(request):
        return HttpResponse(status=204)
    messages.info(request, f"Released candidate {pk}.")
    return redirect(safe_next(request, reverse("review:queue")))


def _act(request, pk: int, form_class, action, verb: str):
    """Run one review action and answer with the fragment the request came from: a
    queue row (`#cand-<id>`), the candidate panel (htmx), or a redirect (plain POST)."""
    candidate = candidate_get(request, pk)
    form = form_class(request.POST)
    status, level = 200, "success"
    if not form.is_valid():
        text = "; ".join(e for errs in form.errors.values() for e in errs)
        status, level = 400, "error"
    else:
        try:
            candidate = action(
                candidate, form.cleaned_data, actor_of(request, candidate)
            )
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
        candidate = candidate_get(request, pk)
    if is_partial(request):
        toasts = [(level, text)]
        target = request.htmx.target or ""
        if target.startswith("cand-"):
            return _row_response(request, candidate, toasts, status)
        context = _candidate_context(request, candidate, toasts=toasts)
        return render(
            request, "review/candidate.html#candidate", context, status=status
        )
    getattr(messages, level)(request, text)
    return redirect(safe_next(request, reverse("review:candidate", args=[pk])))


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
        "status_tabs": status_tabs(counts, capped),
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
@console_action_required("findings.dismiss")
def candidate_finding_dismiss(request, pk: int, finding_id: str):
    """Dismiss one audit finding with a reason (the small form of `_finding.html`)."""

    def dismiss(candidate, data, actor):
        return services.candidate_finding_dismiss(
            namespace=candidate.namespace,
            candidate_id=candidate.pk,
            finding_id=finding_id,
            actor=actor,
            reason=data["reason"],
        )

    return _act(request, pk, DismissFindingForm, dismiss, "had a finding dismissed")


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
