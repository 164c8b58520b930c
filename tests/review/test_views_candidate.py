"""The candidate view: lease, evidence, conflicts side by side, decisions (plain POST
and htmx), admin override, edit, apply preview and apply failures."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from learning.models import CandidateEvidence, LearningCandidate
from review.models import AuditEvent
from tests.factories import (
    CandidateFactory,
    FeedbackFactory,
    NamespaceFactory,
    StepFactory,
    TrajectoryFactory,
)
from tests.review.conftest import hx, make_user

pytestmark = pytest.mark.django_db


def conflict_audit(strategy_id, text="Never rebook basic economy"):
    return {
        "conflict": [
            {
                "severity": "warn",
                "message": "contradicts an applied strategy",
                "related": [{"type": "strategy", "id": strategy_id, "text": text}],
            }
        ],
        "hygiene": [],
        "duplicate": [],
    }


def test_opening_leases_it_and_shows_evidence_with_highlighted_steps(
    rclient, reviewer, acme, django_assert_max_num_queries
):
    run = TrajectoryFactory(
        namespace=acme, status="failure", success_score=0.0, external_id="tb-17"
    )
    for i in range(5):
        StepFactory(trajectory=run, index=i, description=f"step number {i}")
    FeedbackFactory(trajectory=run, score=0.1, message="customer complained")
    c = CandidateFactory(namespace=acme)
    CandidateEvidence.objects.create(candidate=c, trajectory=run, step_indexes=[1, 3])
    with django_assert_max_num_queries(20):
        response = rclient.get(f"/candidates/{c.pk}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "tb-17" in html and "customer complained" in html and "step number 4" in html
    assert html.count("data-highlight") == 2
    assert f'id="step-{run.pk}-1"' in html
    c.refresh_from_db()
    assert c.leased_by == reviewer and c.lease_until > timezone.now()
    assert "You hold this candidate" in html


def test_other_reviewers_see_who_holds_it(acme, reviewer):
    holder = make_user("otto", acme)
    c = CandidateFactory(
        namespace=acme,
        leased_by=holder,
        lease_until=timezone.now() + timedelta(minutes=3),
    )
    client = Client()
    client.force_login(reviewer)
    html = client.get(f"/candidates/{c.pk}/").content.decode()
    assert "<b>otto</b> is reviewing this candidate" in html
    c.refresh_from_db()
    assert c.leased_by == holder


def test_candidates_of_other_namespaces_are_404(rclient):
    c = CandidateFactory(namespace=NamespaceFactory(slug="elsewhere"))
    assert rclient.get(f"/candidates/{c.pk}/").status_code == 404
    assert rclient.post(f"/candidates/{c.pk}/deny/", {"note": "x"}).status_code == 404
    c.refresh_from_db()
    assert c.status == "pending"


def test_candidate_partial_for_htmx(rclient, acme):
    c = CandidateFactory(namespace=acme)
    html = rclient.get(f"/candidates/{c.pk}/", **hx("candidate")).content.decode()
    assert html.lstrip().startswith('<div id="candidate"') and "<html" not in html


def test_deny_as_plain_post_redirects_with_message(rclient, acme):
    c = CandidateFactory(namespace=acme)
    response = rclient.post(
        f"/candidates/{c.pk}/deny/", {"note": "too vague"}, follow=True
    )
    assert response.redirect_chain[-1][0] == f"/candidates/{c.pk}/"
    html = response.content.decode()
    assert f"Candidate {c.pk} denied." in html and "too vague" in html
    event = AuditEvent.objects.get(action="deny")
    assert (event.actor, event.note, event.to_status) == ("rita", "too vague", "denied")


def test_deny_needs_a_reason(rclient, acme):
    c = CandidateFactory(namespace=acme)
    response = rclient.post(
        f"/candidates/{c.pk}/deny/", {"note": ""}, **hx("candidate")
    )
    assert response.status_code == 400
    assert "A denial needs a reason." in response.content.decode()
    c.refresh_from_db()
    assert c.status == "pending"


def test_htmx_row_action_returns_the_row_and_counts(rclient, acme):
    c = CandidateFactory(namespace=acme)
    CandidateFactory(namespace=acme)
    response = rclient.post(
        f"/candidates/{c.pk}/conflict/",
        {"note": ""},
        **hx(f"cand-{c.pk}", "http://testserver/?kind=strategy_helpful"),
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith(f'<tr id="cand-{c.pk}"') and "st-conflicted" in html
    assert 'hx-swap-oob="true"' in html and "marked conflicted" in html
    assert 'data-status="pending"' in html and "kind=strategy_helpful" in html


def test_second_decision_is_refused_with_a_clear_message(rclient, acme, fake_apply):
    c = CandidateFactory(namespace=acme, status="denied", decided_by="otto")
    response = rclient.post(
        f"/candidates/{c.pk}/approve/", {"note": ""}, **hx("candidate")
    )
    assert response.status_code == 409
    assert "was already denied by otto" in response.content.decode()
    assert fake_apply == []
    plain = rclient.post(f"/candidates/{c.pk}/approve/", {"note": ""}, follow=True)
    assert "was already denied by otto" in plain.content.decode()


def test_approve_applies(rclient, acme, fake_apply):
    c = CandidateFactory(namespace=acme)
    response = rclient.post(
        f"/candidates/{c.pk}/approve/", {"note": "good"}, **hx("candidate")
    )
    assert response.status_code == 200
    assert f"Candidate {c.pk} applied (version 2)." in response.content.decode()
    c.refresh_from_db()
    assert c.status == "applied" and c.decided_by == "rita"


def test_block_finding_needs_an_admin_override_which_is_recorded(
    rclient, aclient, acme, fake_apply
):
    c = CandidateFactory(
        namespace=acme,
        max_severity="block",
        audit={
            "hygiene": [
                {"severity": "block", "message": "contains an API key", "related": []}
            ],
            "conflict": [],
            "duplicate": [],
        },
    )
    html = rclient.get(f"/candidates/{c.pk}/").content.decode()
    assert "contains an API key" in html and "Only an admin can override it." in html
    refused = rclient.post(
        f"/candidates/{c.pk}/approve/", {"override": "true"}, **hx("candidate")
    )
    assert refused.status_code == 403
    assert "Only an admin can override" in refused.content.decode()
    no_override = aclient.post(f"/candidates/{c.pk}/approve/", {}, **hx("candidate"))
    assert no_override.status_code == 403
    assert (
        "Override the block finding"
        in aclient.get(f"/candidates/{c.pk}/").content.decode()
    )
    ok = aclient.post(
        f"/candidates/{c.pk}/approve/",
        {"override": "true", "note": "redacted"},
        **hx("candidate"),
    )
    assert ok.status_code == 200
    c.refresh_from_db()
    assert c.status == "applied" and c.override_by == "ada"
    assert AuditEvent.objects.get(action="approve").data == {"override": True}


def test_conflict_is_shown_side_by_side_and_approved_as_replacement(
    rclient, acme, fake_apply
):
    from tests.factories import make_playbook, make_strategy

    playbook = make_playbook(acme, slug="airline")
    old = make_strategy(playbook, "Never rebook basic economy fares")
    c = CandidateFactory(
        namespace=acme,
        playbook=playbook,
        max_severity="warn",
        content="Rebook basic economy fares when the airline cancels",
        audit=conflict_audit(old.pk),
    )
    html = rclient.get(f"/candidates/{c.pk}/").content.decode()
    assert "Conflict — side by side" in html
    assert "Do not rebook basic economy fares." in html
    assert f"Approve as replacement (retires #{old.pk})" in html
    response = rclient.post(
        f"/candidates/{c.pk}/approve/",
        {"replace_strategy": old.pk, "note": f"Replaces #{old.pk}"},
        **hx("candidate"),
    )
    assert response.status_code == 200
    assert fake_apply == [(c.pk, "rita", old.pk)]


def test_conflict_with_an_item_of_another_namespace_is_not_offered(rclient, acme):
    from tests.factories import make_playbook, make_strategy

    foreign = make_strategy(
        make_playbook(NamespaceFactory(slug="elsewhere")), "Secret rule"
    )
    c = CandidateFactory(
        namespace=acme, audit=conflict_audit(foreign.pk, "as reported")
    )
    html = rclient.get(f"/candidates/{c.pk}/").content.decode()
    assert "Secret rule" not in html and "as reported" in html
    assert "Approve as replacement" not in html


def test_apply_failed_shows_the_reason_and_allows_a_retry(rclient, acme):
    c = CandidateFactory(
        namespace=acme,
        status="apply_failed",
        apply_error="The skill changed since the patch was made",
    )
    html = rclient.get(f"/candidates/{c.pk}/").content.decode()
    assert "Approved, but applying it failed:" in html
    assert "The skill changed since the patch was made" in html
    assert "Approve again (retry)" in html


def test_edit_before_approving_is_recorded(rclient, acme, monkeypatch):
    from learning.services import audit

    monkeypatch.setattr(audit, "candidate_audit", lambda *, candidate: None)
    c = CandidateFactory(namespace=acme, content="Check fares")
    response = rclient.post(
        f"/candidates/{c.pk}/edit/",
        {
            "content": "Check fare rules before rebooking",
            "rationale": c.rationale,
            "playbook": "",
            "note": "more precise",
        },
        **hx("candidate"),
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "Check fare rules before rebooking." in html and "more precise" in html
    event = AuditEvent.objects.get(action="edit")
    assert event.data["before"]["content"] == "Check fares"
    # The text is rendered from the lesson read from it.
    assert event.data["after"]["content"] == "Check fare rules before rebooking."
    assert event.data["after"]["directive"] == "check fare rules before rebooking"
    assert "rationale" not in event.data["after"]


def test_edit_with_invalid_input_keeps_the_form_open(rclient, acme):
    c = CandidateFactory(namespace=acme)
    response = rclient.post(
        f"/candidates/{c.pk}/edit/",
        {"content": "", "playbook": "nope"},
        **hx("candidate"),
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="edit" open' in html and "This field is required." in html
    assert not AuditEvent.objects.exists()


def test_apply_preview_is_rendered_when_available(rclient, acme, monkeypatch):
    from playbooks import apply

    monkeypatch.setattr(
        apply,
        "candidate_apply_preview",
        lambda *, candidate, replaces=None: {
            "target": "playbook",
            "name": "airline",
            "from_version": 3,
            "to_version": 4,
            "diff": {
                "added": [{"description": "Check fare rules"}],
                "removed": [],
                "changed": [],
            },
        },
        raising=False,
    )
    c = CandidateFactory(namespace=acme)
    html = rclient.get(f"/candidates/{c.pk}/").content.decode()
    assert (
        "Apply preview" in html and "v3 → v4" in html and "+ Check fare rules" in html
    )


def test_skill_patch_preview_renders_a_unified_diff(rclient, acme, monkeypatch):
    from playbooks import apply

    monkeypatch.setattr(
        apply,
        "candidate_apply_preview",
        lambda *, candidate, replaces=None: {
            "target": "skill",
            "name": "refunds",
            "from_version": 1,
            "to_version": 2,
            "diff": "--- a\n+++ b\n@@ -1 +1 @@\n-old line\n+new line\n",
        },
        raising=False,
    )
    c = CandidateFactory(namespace=acme, kind="patch_skill")
    html = rclient.get(f"/candidates/{c.pk}/").content.decode()
    assert '<span class="add">+new line</span>' in html
    assert '<span class="del">-old line</span>' in html


def test_release_gives_the_lease_back(rclient, reviewer, acme):
    c = CandidateFactory(namespace=acme)
    rclient.get(f"/candidates/{c.pk}/")
    response = rclient.post(f"/candidates/{c.pk}/release/")
    assert response.status_code == 302
    assert LearningCandidate.objects.get(pk=c.pk).leased_by is None


def test_conflict_with_another_pending_candidate_links_to_it(rclient, acme):
    other = CandidateFactory(namespace=acme, content="Never rebook")
    c = CandidateFactory(
        namespace=acme,
        audit={
            "conflict": [
                {
                    "severity": "warn",
                    "message": "Contradicts a pending candidate",
                    "related": [
                        {"type": "candidate", "id": other.pk, "text": "Never rebook"}
                    ],
                }
            ],
            "hygiene": [],
            "duplicate": [],
        },
    )
    html = rclient.get(f"/candidates/{c.pk}/").content.decode()
    assert (
        f'Pending candidate <a href="/candidates/{other.pk}/">#{other.pk}</a>' in html
    )
    assert "Approve as replacement" not in html


def test_evidence_shows_an_excerpt_around_the_highlighted_steps(rclient, acme):
    """Long runs are cut to the lesson's steps with one step of context each side; the
    run page keeps the full timeline."""
    run = TrajectoryFactory(namespace=acme)
    for i in range(10):
        StepFactory(trajectory=run, index=i, description=f"action number {i}")
    c = CandidateFactory(namespace=acme)
    CandidateEvidence.objects.create(candidate=c, trajectory=run, step_indexes=[5])
    html = rclient.get(f"/candidates/{c.pk}/").content.decode()
    shown = [i for i in range(10) if f"action number {i}<" in html]
    assert shown == [4, 5, 6]
    assert "… 4 steps not shown" in html and "… 3 steps not shown" in html
    assert f'href="/runs/{run.pk}/?hl=5">full timeline' in html
    full = rclient.get(f"/runs/{run.pk}/?hl=5").content.decode()
    assert all(f"action number {i}<" in full for i in range(10))
