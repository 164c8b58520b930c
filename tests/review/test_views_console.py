"""The console's views for reopen, undo, group decisions, canned reasons and tags,
guidelines, memories, shape edits and the recall preview: who may, what is written,
what bad input answers, and how many queries a queue row action costs."""

import pytest
from django.test import Client

from learning.models import CandidateEvidence, LearningCandidate
from playbooks.memories import memory_create
from playbooks.models import Memory, Strategy
from review import services
from review.models import AuditEvent, CannedReason, Guideline, ReviewTag
from tests.factories import (
    CandidateFactory,
    NamespaceFactory,
    TrajectoryFactory,
    make_playbook,
)
from tests.review.conftest import hx, make_user

pytestmark = pytest.mark.django_db

QUEUE = "http://testserver/?status=pending"


@pytest.fixture
def pb(acme):
    return make_playbook(acme, "airline")


def row_post(client, c, action, data=None):
    return client.post(
        f"/candidates/{c.pk}/{action}/", data or {}, **hx(f"cand-{c.pk}", QUEUE)
    )


# --- queue row actions: queries ----------------------------------------------------


@pytest.mark.parametrize(
    "action,data,most",
    [
        # The real apply: a playbook version and its audit rows, and the rollout's
        # bookkeeping of a version commit (its rollout, policy and production spell).
        # The target playbook is read once (locked), the evidence runs once, the
        # webhooks once for both events, the production version not again.
        ("approve", {}, 29),
        ("deny", {"note": "vague"}, 12),
        ("conflict", {}, 12),
    ],
)
def test_row_actions_cost_a_bounded_number_of_queries(
    rclient, acme, pb, action, data, most, django_assert_max_num_queries
):
    """One row action answers with its row and the counters in a fixed number of
    queries, however long the queue (seeded with more than one page of rows)."""
    rows = CandidateFactory.create_batch(60, namespace=acme, playbook=pb)
    with django_assert_max_num_queries(most):
        response = row_post(rclient, rows[5], action, data)
    assert response.status_code == 200
    assert response.content.decode().lstrip().startswith(f'<tr id="cand-{rows[5].pk}"')
    assert "fw:decided" in response["HX-Trigger"]


def test_undo_and_reopen_from_a_row_are_bounded(
    rclient, acme, pb, django_assert_max_num_queries
):
    rows = CandidateFactory.create_batch(30, namespace=acme, playbook=pb)
    row_post(rclient, rows[0], "deny", {"note": "vague"})
    with django_assert_max_num_queries(13):
        undone = rclient.post(
            "/candidates/undo/", {"ids": str(rows[0].pk)}, **hx(f"cand-{rows[0].pk}")
        )
    assert undone.status_code == 200 and "Undone: 1 back in the queue" in (
        undone.content.decode()
    )
    row_post(rclient, rows[1], "approve")
    with django_assert_max_num_queries(33):  # the revert makes a playbook version
        reopened = rclient.post(
            f"/candidates/{rows[1].pk}/reopen/", {}, **hx(f"cand-{rows[1].pk}", QUEUE)
        )
    assert reopened.status_code == 200
    assert f"Candidate {rows[1].pk} is pending again." in reopened.content.decode()


# --- reopen ----------------------------------------------------------------------


def test_reopen_from_the_candidate_page(rclient, acme, pb):
    c = CandidateFactory(namespace=acme, playbook=pb)
    rclient.post(f"/candidates/{c.pk}/approve/", {})
    page = rclient.get(f"/candidates/{c.pk}/").content.decode()
    assert f'action="/candidates/{c.pk}/reopen/"' in page
    assert "Reopen (revert version 2)" in page and "data-confirm=" in page
    response = rclient.post(f"/candidates/{c.pk}/reopen/", {"note": "too broad"})
    assert response.status_code == 302
    c.refresh_from_db()
    assert c.status == "pending"
    assert not Strategy.objects.filter(playbook=pb, active=True).exists()
    event = AuditEvent.objects.get(candidate=c, action="reopen")
    assert (event.actor, event.note) == ("rita", "too broad")


def test_reopen_refuses_open_candidates_and_other_namespaces(rclient, acme):
    c = CandidateFactory(namespace=acme)
    refused = rclient.post(f"/candidates/{c.pk}/reopen/", {}, **hx("candidate"))
    assert refused.status_code == 400
    assert f"Candidate {c.pk} is pending; only applied" in refused.content.decode()
    theirs = CandidateFactory(namespace=NamespaceFactory(slug="else"), status="denied")
    assert rclient.post(f"/candidates/{theirs.pk}/reopen/").status_code == 404
    assert rclient.get(f"/candidates/{c.pk}/reopen/").status_code == 405
    assert LearningCandidate.objects.get(pk=theirs.pk).status == "denied"


# --- undo ------------------------------------------------------------------------


def test_undo_names_the_problem_and_leaves_other_namespaces_alone(rclient, acme):
    bad = rclient.post("/candidates/undo/", {"ids": "abc"}, **hx("queue-results"))
    assert bad.status_code == 400
    assert "Name the candidates to undo." in bad.content.decode()
    other = NamespaceFactory(slug="else")
    theirs = CandidateFactory(namespace=other)
    services.candidate_deny(
        namespace=other,
        candidate_id=theirs.pk,
        actor=services.Actor("rita"),  # same name, other namespace
        note="no",
    )
    response = rclient.post("/candidates/undo/", {"ids": str(theirs.pk)}, follow=True)
    assert response.status_code == 200
    assert LearningCandidate.objects.get(pk=theirs.pk).status == "denied"


def test_undo_of_a_bulk_decision_reloads_the_list(rclient, acme):
    rows = CandidateFactory.create_batch(3, namespace=acme)
    rclient.post(
        "/candidates/bulk/",
        {"decision": "deny", "note": "vague", "ids": [c.pk for c in rows]},
    )
    response = rclient.post(
        "/candidates/undo/",
        {"ids": ",".join(str(c.pk) for c in rows)},
        **hx("queue-results", QUEUE),
    )
    html = response.content.decode()
    assert response.status_code == 200 and 'id="queue-results"' in html
    assert "Undone: 3 back in the queue" in html
    assert set(LearningCandidate.objects.values_list("status", flat=True)) == {
        "pending"
    }


# --- group decisions -------------------------------------------------------------


def _alike(acme, pb, n=3):
    rows = []
    for _ in range(n):
        c = CandidateFactory(
            namespace=acme,
            playbook=pb,
            content="Before calling book_reservation, compute the total price with "
            "calculate",
        )
        CandidateEvidence.objects.create(
            candidate=c, trajectory=TrajectoryFactory(namespace=acme)
        )
        rows.append(c)
    return rows


def test_queue_groups_near_identical_lessons_into_one_row(rclient, acme, pb):
    *members, leader = _alike(acme, pb)  # the newest leads
    CandidateFactory(namespace=acme, playbook=pb, content="Ask for the user id first.")
    html = rclient.get("/").content.decode()
    assert html.count("data-group-members") == 1
    assert f'data-group="{members[1].pk},{members[0].pk}"' in html or (
        f'data-group="{members[0].pk},{members[1].pk}"' in html
    )
    assert "×3" in html and "2 near-identical, decided with this one" in html


def test_group_approve_from_a_row_decides_the_group_once(
    rclient, acme, pb, django_assert_max_num_queries
):
    leader, *members = _alike(acme, pb)
    group = ",".join(str(m.pk) for m in members)
    # Each member merged is a few writes (its evidence moved, its supersede row).
    with django_assert_max_num_queries(52):
        response = row_post(rclient, leader, "approve", {"group": group})
    assert response.status_code == 200
    assert "with 2 near-identical candidates" in response.content.decode()
    assert Strategy.objects.filter(playbook=pb, active=True).count() == 1
    statuses = dict(LearningCandidate.objects.values_list("pk", "status"))
    assert statuses[leader.pk] == "applied"
    assert [statuses[m.pk] for m in members] == ["superseded", "superseded"]
    assert (
        f'"ids": [{leader.pk}, {members[0].pk}, {members[1].pk}]'
        in (response["HX-Trigger"])
    )


def test_a_group_cannot_reach_into_another_namespace(rclient, acme, pb):
    leader = _alike(acme, pb, n=1)[0]
    other = NamespaceFactory(slug="else")
    theirs = CandidateFactory(namespace=other, content=leader.content)
    row_post(rclient, leader, "deny", {"note": "no", "group": str(theirs.pk)})
    assert LearningCandidate.objects.get(pk=theirs.pk).status == "pending"
    assert LearningCandidate.objects.get(pk=leader.pk).status == "denied"


# --- canned reasons and tags in a decision ----------------------------------------


def test_deny_with_a_canned_reason_from_a_row(rclient, acme):
    services.review_tag_save(namespace=acme, actor="ada", slug="run-specific")
    reason = services.canned_reason_save(
        namespace=acme, actor="ada", text="Bound to one run", tags=["run-specific"]
    )
    c = CandidateFactory(namespace=acme)
    response = row_post(rclient, c, "deny", {"reason": reason.pk})
    assert response.status_code == 200
    c.refresh_from_db()
    assert (c.status, c.decision_note) == ("denied", "Bound to one run")
    event = AuditEvent.objects.get(candidate=c, action="deny")
    assert [t.slug for t in event.tags.all()] == ["run-specific"]
    dashboard = rclient.get("/dashboard/").content.decode()
    assert 'data-tag-count="run-specific">run-specific 1' in dashboard
    assert 'Bound to one run</td><td class="num">1' in dashboard
    assert '<span class="stat-n" data-decided-today>1</span>' in dashboard


@pytest.mark.parametrize(
    "data,message",
    [
        (
            {"note": "x", "tags": "nope"},
            "Unknown tag &#x27;nope&#x27; in this namespace.",
        ),
        ({"reason": "foreign"}, "No canned reason"),
        ({}, "A denial needs a reason."),
        ({"reason": "abc"}, "Enter a whole number."),
    ],
)
def test_bad_labels_are_a_400_naming_them(rclient, acme, data, message):
    if data.get("reason") == "foreign":
        data = {
            "reason": services.canned_reason_save(
                namespace=NamespaceFactory(slug="else"), actor="x", text="Theirs"
            ).pk
        }
    c = CandidateFactory(namespace=acme)
    response = row_post(rclient, c, "deny", data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert LearningCandidate.objects.get(pk=c.pk).status == "pending"


# --- guidance: guidelines, canned reasons, tags (admins) --------------------------


def test_admins_edit_the_guidance_and_reviewers_see_the_guidelines(
    aclient, rclient, acme
):
    assert aclient.get("/guidance/acme/").status_code == 200
    saved = aclient.post(
        "/guidance/acme/guidelines/", {"text": "# Rules\n\nDeny **run ids**."}
    )
    assert saved.status_code == 302
    aclient.post("/guidance/acme/tags/", {"slug": "vague", "label": "Too vague"})
    aclient.post("/guidance/acme/reasons/", {"text": "Says nothing", "tags": "vague"})
    reason = CannedReason.objects.get()
    assert [t.slug for t in reason.tags.all()] == ["vague"]
    assert Guideline.objects.get(namespace=acme).updated_by == "ada"
    assert list(AuditEvent.objects.order_by("id").values_list("action", "actor")) == [
        ("guideline_edit", "ada"),
        ("tag_create", "ada"),
        ("reason_create", "ada"),
    ]
    c = CandidateFactory(namespace=acme)
    page = rclient.get(f"/candidates/{c.pk}/").content.decode()
    assert "<strong>run ids</strong>" in page  # the markdown, rendered
    assert 'data-reason-text="Says nothing"' in page


def test_guidance_is_for_admins_of_that_namespace(rclient, acme):
    other = NamespaceFactory(slug="else")
    admin_elsewhere = make_user("eve", other, "admin")
    eve = Client()
    eve.force_login(admin_elsewhere)
    for client in (rclient, eve):
        assert client.get("/guidance/acme/").status_code == 403
        assert (
            client.post("/guidance/acme/guidelines/", {"text": "x"}).status_code == 403
        )
        assert client.post("/guidance/acme/tags/", {"slug": "x"}).status_code == 403
        assert client.post("/guidance/acme/reasons/", {"text": "x"}).status_code == 403
    assert eve.get("/guidance/nowhere/").status_code == 404
    assert not Guideline.objects.exists() and not ReviewTag.objects.exists()
    assert not AuditEvent.objects.exists()


def test_bad_guidance_input_is_a_400_naming_it(aclient, acme):
    long = aclient.post("/guidance/acme/guidelines/", {"text": "x" * 20001})
    assert long.status_code == 400
    assert "at most 20000 characters" in long.content.decode()
    tag = aclient.post("/guidance/acme/reasons/", {"text": "Vague", "tags": "nope"})
    assert tag.status_code == 400
    assert "Unknown tag &#x27;nope&#x27;" in tag.content.decode()
    empty = aclient.post("/guidance/acme/reasons/", {"text": ""})
    assert empty.status_code == 400 and "This field is required." in (
        empty.content.decode()
    )
    theirs = services.canned_reason_save(
        namespace=NamespaceFactory(slug="else"), actor="x", text="Theirs"
    )
    foreign = aclient.post("/guidance/acme/reasons/", {"id": theirs.pk, "text": "Mine"})
    assert foreign.status_code == 400
    assert f"No canned reason {theirs.pk} in this namespace." in (
        foreign.content.decode()
    )
    assert CannedReason.objects.get(pk=theirs.pk).text == "Theirs"
    assert not Guideline.objects.exists()


# --- memories --------------------------------------------------------------------


@pytest.fixture
def memories(acme):
    return {
        "aisle": memory_create(
            namespace=acme,
            kind="preference",
            content="Prefers aisle seats",
            user_id="u-1",
            entity="seat",
        ),
        "fact": memory_create(
            namespace=acme,
            kind="durable_fact",
            content="Reservation ABC is basic economy",
            entity="reservation ABC",
        ),
        "theirs": memory_create(
            namespace=NamespaceFactory(slug="else"),
            kind="preference",
            content="Their secret preference",
            user_id="u-1",
        ),
    }


def test_memory_list_filters_by_user_and_entity_in_my_namespaces(
    rclient, memories, django_assert_max_num_queries
):
    with django_assert_max_num_queries(8):
        html = rclient.get("/memories/").content.decode()
    assert "Prefers aisle seats" in html and "basic economy" in html
    assert "Their secret preference" not in html
    by_user = rclient.get("/memories/?user_id=u-1").content.decode()
    assert "Prefers aisle seats" in by_user and "basic economy" not in by_user
    by_entity = rclient.get("/memories/?entity=reservation").content.decode()
    assert "basic economy" in by_entity and "aisle" not in by_entity
    bad = rclient.get("/memories/?kind=nonsense").content.decode()
    assert "Invalid filter: kind" in bad


def test_memory_detail_edit_retire_and_history(aclient, rclient, memories):
    aisle, theirs = memories["aisle"], memories["theirs"]
    assert rclient.get(f"/memories/{theirs.pk}/").status_code == 404
    page = rclient.get(f"/memories/{aisle.pk}/").content.decode()
    assert "Prefers aisle seats" in page
    assert f'action="/memories/{aisle.pk}/retire/"' not in page  # reviewers read
    refused = rclient.post(
        f"/memories/{aisle.pk}/",
        {"kind": "preference", "content": "x", "importance": 0.5},
    )
    assert refused.status_code == 403
    bad = aclient.post(
        f"/memories/{aisle.pk}/",
        {"kind": "preference", "content": "Prefers window", "importance": 3},
    )
    assert bad.status_code == 400
    assert "Ensure this value is less than or equal to 1" in bad.content.decode()
    saved = aclient.post(
        f"/memories/{aisle.pk}/",
        {
            "kind": "preference",
            "content": "Prefers window seats",
            "importance": 0.9,
            "user_id": "u-1",
            "entity": "seat",
            "note": "user said so",
        },
    )
    assert saved.status_code == 302
    aisle.refresh_from_db()
    assert (aisle.content, aisle.importance) == ("Prefers window seats", 0.9)
    edit = AuditEvent.objects.get(action="memory_edit")
    assert edit.data["before"]["content"] == "Prefers aisle seats"
    assert edit.note == "user said so"
    assert rclient.post(f"/memories/{aisle.pk}/retire/").status_code == 403
    assert aclient.post(f"/memories/{theirs.pk}/retire/").status_code == 404
    assert aclient.post(f"/memories/{aisle.pk}/retire/").status_code == 302
    assert not Memory.objects.get(pk=aisle.pk).active
    assert Memory.objects.get(pk=theirs.pk).active
    history = rclient.get(f"/memories/{aisle.pk}/").content.decode()
    assert "memory_edit" in history or "edited" in history
    retired = rclient.get("/memories/?state=retired").content.decode()
    assert "Prefers window seats" in retired


# --- edit of the lesson shape, recall preview -------------------------------------


def test_edit_form_changes_polarity_and_the_recall_preview_shows_it(rclient, acme, pb):
    c = CandidateFactory(
        namespace=acme,
        playbook=pb,
        task_type="airline.rebook",
        content="When the fare is basic economy, rebook the flight for the user.",
    )
    page = rclient.get(f"/candidates/{c.pk}/").content.decode()
    assert 'name="polarity"' in page and 'name="when"' in page
    response = rclient.post(
        f"/candidates/{c.pk}/edit/",
        {
            "kind": "strategy_harmful",
            "polarity": "avoid",
            "when": "the fare is basic economy",
            "directive": "rebook the flight for the user",
            "content": c.content,
        },
        **hx("candidate"),
    )
    assert response.status_code == 200
    c.refresh_from_db()
    assert (c.kind, c.polarity) == ("strategy_harmful", "avoid")
    assert (
        c.content
        == "When the fare is basic economy, do not rebook the flight for the user."
    )
    preview = rclient.get(
        f"/candidates/{c.pk}/recall/",
        {"task": "rebook a basic economy fare flight", "budget_tokens": 800},
        **hx("recall-preview"),
    ).content.decode()
    assert "do not rebook the flight for the user" in preview
    assert "data-recall-with" in preview


@pytest.mark.parametrize(
    "data,message",
    [
        ({"polarity": "sideways"}, "polarity: Select a valid choice"),
        ({"kind": "patch_skill"}, "kind: Select a valid choice"),
        ({"content": ""}, "content: This field is required."),
        ({"when": "x" * 5000}, "when: Ensure this value has at most"),
    ],
)
def test_bad_edits_are_a_400_naming_the_field(rclient, acme, data, message):
    c = CandidateFactory(namespace=acme)
    response = rclient.post(
        f"/candidates/{c.pk}/edit/",
        {"content": c.content, **data},
        **hx("candidate"),
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not AuditEvent.objects.exists()


def test_recall_preview_rejects_a_bad_budget_and_other_namespaces(rclient, acme, pb):
    c = CandidateFactory(namespace=acme, playbook=pb)
    bad = rclient.get(
        f"/candidates/{c.pk}/recall/", {"task": "x", "budget_tokens": 5}, **hx("x")
    )
    assert bad.status_code == 400
    assert "budget_tokens: Ensure this value is greater than or equal to 50" in (
        bad.content.decode()
    )
    theirs = CandidateFactory(
        namespace=NamespaceFactory(slug="else"),
        playbook=make_playbook(NamespaceFactory(slug="other"), "airline"),
    )
    assert rclient.get(f"/candidates/{theirs.pk}/recall/?task=x").status_code == 404


def test_not_found_page_has_the_console_navigation(rclient):
    response = rclient.get("/candidates/999999/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "No such candidate in your namespaces." in html
    assert (
        'href="/dashboard/"' in html
    )  # the layout's navigation, not Django's bare page
