"""The queue: filters, status tabs, pages, bulk decisions."""

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
    is_partial,
    reviewer_required,
)

QUEUE_PAGE_SIZE = 50


def status_tabs(counts, capped):
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
    return {
        "queue": queue,
        "filter": queue.filterset,
        "page": page,
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
    return _bulk_response(request, query, back, level=level, text=outcome.summary())


def _bulk_response(
    request, query: str, back: str, *, level: str, text: str, status=200
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
        return render(
            request, "review/queue.html#queue-results", context, status=status
        )
    getattr(messages, level)(request, text)
    return redirect(back)
