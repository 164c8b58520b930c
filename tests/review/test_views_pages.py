"""Run browser, run timeline, activity trail and dashboard: namespaced, filterable,
constant queries, htmx partials."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from learning.models import Reflection, Trajectory
from review.trail import audit_event_record
from tests.factories import (
    CandidateFactory,
    FeedbackFactory,
    NamespaceFactory,
    StepFactory,
    TrajectoryFactory,
)
from tests.review.conftest import HX

pytestmark = pytest.mark.django_db


def test_run_list_filters_and_stays_in_my_namespaces(rclient, acme):
    TrajectoryFactory(
        namespace=acme,
        task_description="Book a flight to Boston",
        status="failure",
        task_type="airline.book",
    )
    TrajectoryFactory(
        namespace=acme,
        task_description="Cancel reservation",
        status="success",
        task_type="airline.cancel",
    )
    TrajectoryFactory(
        namespace=NamespaceFactory(slug="elsewhere"), task_description="Foreign run"
    )
    html = rclient.get("/runs/").content.decode()
    assert (
        "Book a flight" in html
        and "Cancel reservation" in html
        and "Foreign" not in html
    )
    filtered = rclient.get("/runs/?status=failure").content.decode()
    assert "Book a flight" in filtered and "Cancel reservation" not in filtered
    partial = rclient.get("/runs/?q=cancel", **HX).content.decode()
    assert partial.lstrip().startswith('<div id="run-results">')
    assert "Cancel reservation" in partial and "Book a flight" not in partial


def test_run_list_query_count_is_constant(rclient, acme, django_assert_num_queries):
    for run in TrajectoryFactory.create_batch(2, namespace=acme):
        StepFactory(trajectory=run, index=0)
    with CaptureQueriesContext(connection) as two:
        rclient.get("/runs/")
    TrajectoryFactory.create_batch(20, namespace=acme)
    with django_assert_num_queries(len(two)):
        response = rclient.get("/runs/")
    assert len(response.context["page"]) == 22


def test_run_detail_is_a_timeline_with_feedback_reflections_and_highlights(
    rclient, acme
):
    run = TrajectoryFactory(namespace=acme, external_id="tb-9", status="failure")
    for i in range(3):
        StepFactory(trajectory=run, index=i, description=f"did thing {i}")
    FeedbackFactory(trajectory=run, score=0.2, message="wrong cabin")
    Reflection.objects.create(
        namespace=acme,
        trajectory=run,
        reflector="offline",
        harmful_patterns=[{"description": "skipped the fare check"}],
    )
    c = CandidateFactory(namespace=acme, content="Check the fare first")
    c.evidence.create(trajectory=run, step_indexes=[2])
    html = rclient.get(f"/runs/{run.pk}/?hl=2").content.decode()
    assert "did thing 0" in html and "wrong cabin" in html
    assert "skipped the fare check" in html and "Check the fare first" in html
    assert html.count("data-highlight") == 1 and f'id="step-{run.pk}-2"' in html


def test_run_of_another_namespace_is_404(rclient):
    run = TrajectoryFactory(namespace=NamespaceFactory(slug="elsewhere"))
    assert rclient.get(f"/runs/{run.pk}/").status_code == 404


def test_activity_shows_the_trail_and_filters(rclient, acme):
    c = CandidateFactory(namespace=acme)
    audit_event_record(
        namespace=acme,
        actor="ada",
        action="approve",
        target_type="candidate",
        target_id=c.pk,
        candidate=c,
        from_status="pending",
        to_status="approved",
        note="looks right",
    )
    audit_event_record(
        namespace=acme,
        actor="rita",
        action="edit",
        target_type="candidate",
        target_id=c.pk,
        candidate=c,
        data={"before": {"content": "old text"}, "after": {"content": "new text"}},
    )
    audit_event_record(
        namespace=NamespaceFactory(slug="elsewhere"),
        actor="eve",
        action="deny",
        target_type="candidate",
        target_id=1,
    )
    html = rclient.get("/activity/").content.decode()
    # The edit as a word-level diff.
    assert "looks right" in html and "<del>old</del><ins>new</ins> text" in html
    assert "eve" not in html
    only_edits = rclient.get("/activity/?action=edit", **HX).content.decode()
    assert only_edits.lstrip().startswith('<div id="activity-results">')
    assert "<ins>new</ins>" in only_edits and "looks right" not in only_edits
    by_actor = rclient.get("/activity/?actor=ad").content.decode()
    assert "looks right" in by_actor and "new text" not in by_actor


def test_activity_query_count_is_constant(rclient, acme, django_assert_num_queries):
    def events(n):
        for _ in range(n):
            c = CandidateFactory(namespace=acme)
            audit_event_record(
                namespace=acme,
                actor="ada",
                action="deny",
                target_type="candidate",
                target_id=c.pk,
                candidate=c,
            )

    events(2)
    with CaptureQueriesContext(connection) as two:
        rclient.get("/activity/")
    events(20)
    with django_assert_num_queries(len(two)):
        rclient.get("/activity/")


def test_dashboard_draws_queue_health_decisions_and_learning_curves(rclient, acme):
    now = timezone.now()
    CandidateFactory(namespace=acme, kind="procedure")
    old = CandidateFactory(namespace=acme, kind="preference")
    type(old).objects.filter(pk=old.pk).update(created_at=now - timedelta(days=3))
    CandidateFactory(namespace=NamespaceFactory(slug="elsewhere"))
    c = CandidateFactory(namespace=acme, status="denied")
    audit_event_record(
        namespace=acme,
        actor="ada",
        action="deny",
        target_type="candidate",
        target_id=c.pk,
        candidate=c,
    )
    for status in ("success", "success", "failure"):
        TrajectoryFactory(namespace=acme, task_type="airline.book", status=status)
    for days_ago in (2, 5):
        run = TrajectoryFactory(
            namespace=acme, task_type="airline.book", status="failure"
        )
        Trajectory.objects.filter(pk=run.pk).update(
            created_at=now - timedelta(days=days_ago)
        )
    response = rclient.get("/dashboard/")
    html = response.content.decode()
    assert response.status_code == 200
    health = response.context["health"]
    assert health["total"] == 2
    assert [b["total"] for b in health["buckets"]] == [1, 0, 1, 0]
    assert response.context["decisions"][-1]["deny"] == 1
    assert response.context["curves"]["mode"] == "day"
    line = response.context["curves_chart"]["lines"][0]
    assert line["name"] == "airline.book" and line["runs"] == 5
    assert len(line["dots"]) == 3  # three days with runs
    assert "2/3 (67%)" in line["dots"][-1]["title"]
    assert "0/1 (0%)" in line["dots"][0]["title"]
    assert (
        html.count("<svg") >= 3
        and "<polyline" in html
        and '<script src="http' not in html
    )


def test_charts_scale_bars_to_the_tallest():
    from review.charts import stacked_bars

    chart = stacked_bars(
        rows=[{"l": "a", "x": 2, "y": 2}, {"l": "b", "x": 0, "y": 1}],
        keys=["x", "y"],
        label_key="l",
        colours={"x": "#000", "y": "#fff"},
    )
    first, second = chart["bars"]
    assert len(first["segments"]) == 2 and len(second["segments"]) == 1
    assert first["segments"][0]["h"] == 2 * second["segments"][0]["h"]
    assert chart["ticks"][-1]["value"] == 4


def test_learning_curve_by_run_order_when_runs_span_under_three_days(rclient, acme):
    """An import lands every run on one day: the curve then follows the runs in the
    order they ran, in tenths — failures first, successes later shows as a rising line."""
    for i in range(20):
        TrajectoryFactory(
            namespace=acme,
            task_type="airline.book",
            status="failure" if i < 10 else "success",
        )
    TrajectoryFactory(namespace=acme, task_type="retail.return", status="success")
    response = rclient.get("/dashboard/")
    curves = response.context["curves"]
    assert curves["mode"] == "order" and len(curves["slots"]) == 10
    assert curves["series"]["airline.book"] == {
        i: (0 if i < 5 else 2, 2) for i in range(10)
    }
    assert curves["series"]["retail.return"] == {0: (1, 1)}
    assert "by tenths of its runs" in response.content.decode()
