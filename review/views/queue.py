"""The queue: filters, status tabs, pages, bulk decisions."""

import json
from urllib.parse import urlsplit

from django.contrib import messages
from django.http import QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from learning.models import (
    CandidateKind,
    CandidateStatus,
)
from review import selectors, services
from review.forms import (
    BulkForm,
)
from review.pagination import page_get
from review.views.common import (
    guidance_for,
    is_partial,
    reviewer_required,
)

QUEUE_PAGE_SIZE = 50


# A status the queue passes through inside one transaction (approve then apply):
# its tab shows only when something is stuck in it.
TRANSIENT = {CandidateStatus.APPROVED}


def status_tabs(counts, capped):
    tabs = [
        (s, counts[s], s in capped)
        for s in CandidateStatus.values
        if s not in TRANSIENT or counts[s]
    ]
    return tabs + [(selectors.ALL, counts[selectors.ALL], selectors.ALL in capped)]


def _queue_context(request, params) -> dict:
    namespaces = selectors.user_namespace_choices(user=request.user)
    queue = selectors.candidate_queue(
        user=request.user, params=params, namespaces=namespaces
    )
    counts, capped = selectors.status_counts(
        candidates=queue.without_status,
        show_hidden=queue.show_hidden,
        counting=queue.counting,
    )
    current = queue.status[0] if len(queue.status) == 1 else selectors.ALL
    if current in counts and not (len(queue.status) > 1):
        page = page_get(
            request,
            queue.candidates,
            QUEUE_PAGE_SIZE,
            params,
            count=counts[current],
            capped=current in capped,
        )
    else:
        page = page_get(request, queue.candidates, QUEUE_PAGE_SIZE, params)
    query = params.urlencode() if hasattr(params, "urlencode") else ""
    rows = list(page.object_list)
    return {
        "queue": queue,
        "filter": queue.filterset,
        "page": page,
        "groups": selectors.queue_groups(rows),
        "guidance": guidance_for(
            [ns for ns in namespaces if ns.pk in {c.namespace_id for c in rows}]
        ),
        "match_count": page.paginator.count,
        "match_capped": getattr(page.paginator, "capped", False),
        "counts": counts,
        "current_status": current,
        "status_tabs": status_tabs(counts, capped),
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
    if is_partial(request):
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
    response = _bulk_response(request, query, back, level=level, text=outcome.summary())
    decided = outcome.decided + outcome.apply_failed
    if decided and is_partial(request):
        response["HX-Trigger"] = json.dumps(
            {"fw:decided": {"ids": decided, "bulk": True}}
        )
    return response


def queue_results_response(request, *, toasts, status=200):
    """The list (#queue-results) of the page the request came from (HX-Current-URL),
    with toasts: after an undo of a bulk decision."""
    query = urlsplit(request.htmx.current_url or "").query
    context = _queue_context(request, QueryDict(query))
    context["toasts"] = toasts
    return render(request, "review/queue.html#queue-results", context, status=status)


def _bulk_response(
    request, query: str, back: str, *, level: str, text: str, status=200, undo_ids=()
):
    if is_partial(request):
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
        context["undo_ids"] = list(undo_ids)
        return render(
            request, "review/queue.html#queue-results", context, status=status
        )
    getattr(messages, level)(request, text)
    return redirect(back)
