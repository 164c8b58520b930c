"""Reading around the queue: the run browser, a run's timeline, the activity trail and
the dashboard."""

from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_GET

from learning.models import (
    CandidateKind,
    RunStatus,
    Trajectory,
)
from learning.permissions import user_namespaces
from review import charts, selectors
from review.pagination import page_get
from review.views.common import (
    is_partial,
    reviewer_required,
)


@require_GET
@reviewer_required
def runs(request):
    filterset, qs = selectors.run_browser(user=request.user, params=request.GET)
    context = {
        "filter": filterset,
        "page": page_get(request, qs, 50),
        "namespaces": selectors.user_namespace_choices(user=request.user),
        "run_statuses": RunStatus.values,
    }
    if is_partial(request):
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
    page = page_get(request, events, 50)
    versions = selectors.activity_versions(events=page.object_list)
    for event in page.object_list:
        event.version = versions.get(event.pk)
    context = {
        "page": page,
        "namespaces": selectors.user_namespace_choices(user=request.user),
        "actions": selectors.activity_actions(user=request.user),
        "params": request.GET,
    }
    if is_partial(request):
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
        "progress": selectors.review_progress(user=request.user),
        "labels": selectors.decision_labels_counts(user=request.user),
        "guidance_namespaces": list(
            user_namespaces(request.user, action="reasons.edit").order_by("slug")
        ),
        "curves_chart": charts.line_chart(
            slots=curves["slots"], series=curves["series"]
        ),
    }
    return render(request, "review/dashboard.html", context)
