"""The candidates API: list with CandidateFilter at constant queries, detail, agent
proposals by playbook mode, and review actions for reviewer tokens."""

import pytest

from learning.models import CandidateEvidence
from playbooks.services import playbook_create
from tests.factories import CandidateFactory, TrajectoryFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_audit(monkeypatch):
    """Audits are tested on their own; here they would only add queries and time."""
    monkeypatch.setattr(
        "learning.services.candidates.candidates_audit_enqueue", lambda **kw: None
    )


def seed(namespace, n=3, **kwargs):
    out = []
    for _ in range(n):
        candidate = CandidateFactory(namespace=namespace, **kwargs)
        for _ in range(2):
            run = TrajectoryFactory(namespace=namespace)
            CandidateEvidence.objects.create(
                candidate=candidate, trajectory=run, step_indexes=[1, 2]
            )
        out.append(candidate)
    return out


def test_list_has_the_documented_fields_at_constant_queries(
    reviewer_client, django_assert_num_queries
):
    ns = reviewer_client.namespace
    playbook = playbook_create(namespace=ns, slug="airline")
    seed(ns, 2, playbook=playbook)
    reviewer_client.get(
        "/api/v1/candidates/"
    )  # the token's last_used_at is stamped once
    with django_assert_num_queries(4):  # token, count, rows, evidence
        body = reviewer_client.get("/api/v1/candidates/").json()
    seed(ns, 4, playbook=playbook)
    with django_assert_num_queries(4):
        body = reviewer_client.get("/api/v1/candidates/").json()
    assert body["count"] == 6
    item = body["results"][0]
    for field in (
        "id",
        "kind",
        "status",
        "content",
        "rationale",
        "confidence",
        "playbook",
        "evidence_runs",
        "evidence_count",
        "audited_at",
        "audit",
        "created_at",
        "decided_by",
        "decision_note",
        "evidence",
        "target",
        "below_floor",
    ):
        assert field in item
    assert item["playbook"] == "airline"
    assert len(item["evidence_runs"]) == 2
    assert item["evidence"][0]["step_indexes"] == [1, 2]


def test_filters_and_hidden_below_floor(reviewer_client):
    """Below-floor candidates are hidden unless asked for; filters combine."""
    ns = reviewer_client.namespace
    CandidateFactory(
        namespace=ns,
        kind="preference",
        content="Prefers aisle seats",
        confidence=0.2,
        below_floor=True,
    )
    CandidateFactory(
        namespace=ns,
        kind="strategy_harmful",
        content="Never cancel basic",
        confidence=0.9,
    )
    CandidateFactory(
        namespace=ns,
        kind="strategy_helpful",
        status="denied",
        decision_note="too vague",
        confidence=0.5,
    )

    def ids(query):
        response = reviewer_client.get(f"/api/v1/candidates/?{query}")
        assert response.status_code == 200, response.json()
        return [c["content"] for c in response.json()["results"]]

    assert len(ids("")) == 2
    assert len(ids("show_hidden=true")) == 3
    assert ids("kind=strategy_harmful&min_confidence=0.8") == ["Never cancel basic"]
    assert ids("q=AISLE&show_hidden=true") == ["Prefers aisle seats"]
    denied = reviewer_client.get("/api/v1/candidates/?status=denied").json()["results"]
    assert denied[0]["decision_note"] == "too vague"
    # Once decided, a below-floor candidate is listed like any other.
    CandidateFactory(
        namespace=ns,
        kind="preference",
        content="Prefers window seats",
        confidence=0.2,
        below_floor=True,
        status="denied",
    )
    assert "Prefers window seats" in ids("status=denied")
    assert "Prefers aisle seats" not in ids("status=pending&status=denied")
    bad = reviewer_client.get("/api/v1/candidates/?status=maybe")
    assert bad.status_code == 400 and "status" in bad.json()


def test_detail_is_namespaced(agent_client, other_client):
    candidate = CandidateFactory(namespace=agent_client.namespace)
    assert agent_client.get(f"/api/v1/candidates/{candidate.pk}/").status_code == 200
    assert other_client.get(f"/api/v1/candidates/{candidate.pk}/").status_code == 404
    assert agent_client.get("/api/v1/candidates/nope/").status_code == 404


@pytest.mark.parametrize("mode", ["agentic", "propose"])
def test_agents_propose_to_agentic_and_propose_playbooks(agent_client, mode):
    ns = agent_client.namespace
    playbook_create(namespace=ns, slug="airline", mode=mode)
    run = TrajectoryFactory(namespace=ns)
    payload = {
        "kind": "strategy_helpful",
        "content": "Check the cabin with get_reservation_details first.",
        "rationale": "r",
        "confidence": 0.8,
        "playbook": "airline",
        "evidence_runs": [str(run.pk)],
    }
    response = agent_client.post_json("/api/v1/candidates/", payload)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["source"] == "agent" and body["proposed_by"] == "token:agent-1"
    assert body["evidence_runs"] == [str(run.pk)] and body["status"] == "pending"
    again = agent_client.post_json("/api/v1/candidates/", payload)
    assert again.status_code == 200 and again.json()["id"] == body["id"]


def test_background_playbooks_refuse_agent_proposals(agent_client):
    playbook_create(namespace=agent_client.namespace, slug="airline", mode="background")
    response = agent_client.post_json(
        "/api/v1/candidates/",
        {"kind": "strategy_helpful", "content": "Do X first", "playbook": "airline"},
    )
    assert response.status_code == 403
    assert "agentic" in response.json()["detail"]


@pytest.mark.parametrize(
    "payload,field",
    [
        (
            {"kind": "strategy_helpful", "content": "x", "playbook": "missing"},
            "playbook",
        ),
        ({"kind": "strategy_helpful", "content": "x"}, "playbook"),
        ({"kind": "nope", "content": "x", "playbook": "airline"}, "kind"),
        (
            {
                "kind": "strategy_helpful",
                "content": "x",
                "playbook": "airline",
                "confidence": 3,
            },
            "confidence",
        ),
        (
            {
                "kind": "strategy_helpful",
                "content": "x",
                "playbook": "airline",
                "evidence_runs": ["not-a-run"],
            },
            "evidence_runs",
        ),
    ],
)
def test_bad_proposals_name_the_field(agent_client, payload, field):
    playbook_create(namespace=agent_client.namespace, slug="airline", mode="agentic")
    response = agent_client.post_json("/api/v1/candidates/", payload)
    assert response.status_code == 400
    assert field in response.json()


def test_review_actions_need_a_reviewer_and_map_errors(
    agent_client, reviewer_client, other_client
):
    """Agents get 403, other namespaces 404; deny needs a note (400 naming it); a
    decided candidate answers 409; denial notes reach agents."""
    ns = reviewer_client.namespace
    denied, conflicted = CandidateFactory(namespace=ns), CandidateFactory(namespace=ns)
    url = f"/api/v1/candidates/{denied.pk}"
    assert agent_client.post_json(f"{url}/deny/", {"note": "x"}).status_code == 403
    assert other_client.post_json(f"{url}/deny/", {"note": "x"}).status_code == 404
    missing = reviewer_client.post_json(f"{url}/deny/", {})
    assert missing.status_code == 400 and "note" in missing.json()
    ok = reviewer_client.post_json(f"{url}/deny/", {"note": "too vague"})
    assert ok.status_code == 200
    assert (
        ok.json()["status"] == "denied"
        and ok.json()["decided_by"] == "token:reviewer-1"
    )
    again = reviewer_client.post_json(f"{url}/approve/", {"note": "hm"})
    assert again.status_code == 409 and "already denied" in again.json()["detail"]
    seen = agent_client.get(f"{url}/").json()
    assert seen["decision_note"] == "too vague"
    marked = reviewer_client.post_json(
        f"/api/v1/candidates/{conflicted.pk}/conflict/", {"note": "contradicts policy"}
    )
    assert marked.status_code == 200 and marked.json()["status"] == "conflicted"


def test_a_blocking_finding_needs_an_admin_override(reviewer_client, admin_client_api):
    candidate = CandidateFactory(
        namespace=reviewer_client.namespace, max_severity="block"
    )
    url = f"/api/v1/candidates/{candidate.pk}/approve/"
    plain = reviewer_client.post_json(url, {"note": "ok"})
    assert plain.status_code == 403 and "override" in plain.json()["detail"]
    not_admin = reviewer_client.post_json(url, {"note": "ok", "override": True})
    assert not_admin.status_code == 403 and "admin" in not_admin.json()["detail"]
    admin = admin_client_api.post_json(url, {"note": "ok", "override": True})
    assert admin.status_code == 200
    assert admin.json()["status"] in ("applied", "apply_failed")


@pytest.mark.parametrize(
    "kind, content, polarity, rendered",
    [
        (
            "strategy_harmful",
            "Before calling book_reservation, compute the total with calculate.",
            "do",
            "Before calling book_reservation, compute the total with calculate.",
        ),
        (
            "strategy_harmful",
            "Cancelling a reservation without first checking its fare rules.",
            "avoid",
            "Avoid cancelling a reservation without first checking its fare rules.",
        ),
        (
            "strategy_harmful",
            "Do not call update_reservation_flights again after it failed.",
            "avoid",
            "Do not call update_reservation_flights again after it failed.",
        ),
        (
            "strategy_helpful",
            "When the user cannot give the id, look it up with get_user_details.",
            "do",
            "When the user cannot give the id, look it up with get_user_details.",
        ),
    ],
)
def test_a_proposal_as_text_gets_its_polarity_classified_and_returned(
    agent_client, kind, content, polarity, rendered
):
    """`content` alone is accepted: its polarity is classified and returned (marked
    as classified for a reviewer to check), and the content is what recall will
    hand out."""
    playbook_create(namespace=agent_client.namespace, slug="airline")
    response = agent_client.post(
        "/api/v1/candidates/",
        {"kind": kind, "content": content, "playbook": "airline"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["polarity"], body["shape_classified"]) == (polarity, True)
    assert body["content"] == rendered and body["directive"]


def test_a_proposal_in_the_lesson_shape_is_rendered(agent_client):
    """Structured fields are accepted as stated (not classified) and the content is
    rendered from them."""
    playbook_create(namespace=agent_client.namespace, slug="airline")
    response = agent_client.post(
        "/api/v1/candidates/",
        {
            "kind": "strategy_harmful",
            "polarity": "avoid",
            "when": "a flight change was refused as not available",
            "directive": "send the same `update_reservation_flights` call again",
            "why": "it failed the same way three times",
            "playbook": "airline",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["content"] == (
        "When a flight change was refused as not available, do not send the same "
        "`update_reservation_flights` call again."
    )
    assert (body["polarity"], body["shape_classified"]) == ("avoid", False)
    assert body["why"] == "it failed the same way three times"
    assert body["provenance"] == "agent"


def test_a_bad_polarity_or_an_empty_lesson_is_a_400_naming_the_field(agent_client):
    playbook_create(namespace=agent_client.namespace, slug="airline")
    bad = agent_client.post(
        "/api/v1/candidates/",
        {
            "kind": "strategy_helpful",
            "polarity": "maybe",
            "directive": "x",
            "playbook": "airline",
        },
        format="json",
    )
    assert bad.status_code == 400 and "polarity" in bad.json()
    empty = agent_client.post(
        "/api/v1/candidates/",
        {"kind": "strategy_helpful", "playbook": "airline"},
        format="json",
    )
    assert empty.status_code == 400 and "content" in empty.json()
    long = agent_client.post(
        "/api/v1/candidates/",
        {"kind": "strategy_helpful", "content": "x" * 4001, "playbook": "airline"},
        format="json",
    )
    assert long.status_code == 400 and "content" in long.json()
