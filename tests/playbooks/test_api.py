"""The playbooks API: the admin lifecycle (create, apply, recall, rollback), roles,
namespaces, field-named errors and list query counts."""

import pytest

from playbooks.models import Playbook, RecallLog
from review.services import Actor, candidate_approve
from tests.factories import CandidateFactory, make_playbook, make_strategy

pytestmark = pytest.mark.django_db


def create(client, slug="airline", **extra):
    return client.post_json(
        "/api/v1/playbooks/",
        {"slug": slug, "name": "Airline", "scope": "team", "mode": "propose", **extra},
    )


def test_lifecycle_create_apply_recall_rollback(admin_client_api, agent_client):
    """Create a playbook, approve a candidate, see the version rise and recall return it,
    roll back and see it gone in a new version."""
    response = create(admin_client_api)
    assert response.status_code == 201, response.json()
    assert response.json()["version"] == 1 and response.json()["strategies"] == []
    playbook = Playbook.objects.get(slug="airline")
    candidate = CandidateFactory(
        namespace=playbook.namespace,
        playbook=playbook,
        content="Check the membership tier with get_user_details before quoting baggage "
        "allowance.",
    )
    candidate_approve(
        namespace=playbook.namespace, candidate_id=candidate.pk, actor=Actor("r")
    )

    detail = agent_client.get("/api/v1/playbooks/airline/").json()
    assert detail["version"] == 2
    assert detail["strategies"][0]["source_candidate"] == candidate.pk
    ctx = agent_client.get(
        "/api/v1/playbooks/airline/context/",
        {"task": "baggage allowance for gold member", "budget_tokens": 200},
    )
    assert ctx.status_code == 200
    body = ctx.json()
    assert set(body) == {"playbook", "version", "cohort", "context", "items", "tokens"}
    assert body["cohort"] == "production"
    assert body["version"] == 2 and "membership tier" in body["context"]
    assert body["tokens"] <= 200

    rollback = admin_client_api.post_json(
        "/api/v1/playbooks/airline/versions/1/rollback/", {}
    )
    assert rollback.status_code == 201
    assert rollback.json()["number"] == 3 and rollback.json()["content"] == []
    ctx = agent_client.get(
        "/api/v1/playbooks/airline/context/", {"task": "baggage allowance"}
    )
    assert "membership tier" not in ctx.json()["context"]
    assert agent_client.get("/api/v1/playbooks/airline/").json()["version"] == 3
    history = agent_client.get("/api/v1/playbooks/airline/versions/").json()
    assert [v["number"] for v in history["results"]] == [3, 2, 1]
    assert history["results"][1]["diff"]["added"][0]["description"].startswith("Check")
    assert RecallLog.objects.count() == 2


def test_strategy_add_edit_move_retire_through_the_api(admin_client_api):
    """POST …/strategies/ adds (201) or, with id, edits, moves and retires (200)."""
    create(admin_client_api)
    url = "/api/v1/playbooks/airline/strategies/"
    a = admin_client_api.post_json(
        url, {"type": "helpful", "description": "Alpha.", "context": "baggage"}
    )
    assert a.status_code == 201 and a.json()["version"] == 2
    b = admin_client_api.post_json(url, {"type": "harmful", "description": "Beta."})
    ids = [s["id"] for s in b.json()["strategies"]]
    edited = admin_client_api.post_json(url, {"id": ids[0], "description": "Alpha 2."})
    assert edited.status_code == 200 and edited.json()["version"] == 4
    moved = admin_client_api.post_json(url, {"id": ids[1], "position": 0})
    assert [s["id"] for s in moved.json()["strategies"]] == [ids[1], ids[0]]
    retired = admin_client_api.post_json(url, {"id": ids[1], "retire": True})
    assert [s["description"] for s in retired.json()["strategies"]] == ["Alpha 2."]
    assert retired.json()["version"] == 6


def test_bad_input_names_the_field(admin_client_api):
    """Missing or wrong fields are 400s naming them; a taken slug is 409."""
    assert create(admin_client_api).status_code == 201
    dup = create(admin_client_api)
    assert dup.status_code == 409 and "slug" in dup.json()
    bad = admin_client_api.post_json(
        "/api/v1/playbooks/", {"slug": "Not a slug", "scope": "x"}
    )
    assert bad.status_code == 400 and {"slug", "scope"} <= set(bad.json())
    url = "/api/v1/playbooks/airline/strategies/"
    missing = admin_client_api.post_json(url, {"context": "x"})
    assert missing.status_code == 400 and {"type", "description"} <= set(missing.json())
    wrong = admin_client_api.post_json(url, {"type": "helpful", "description": 5})
    assert wrong.status_code == 400 and "description" in wrong.json()
    unknown = admin_client_api.post_json(url, {"id": 999999, "retire": True})
    assert unknown.status_code == 404
    ctx = admin_client_api.get(
        "/api/v1/playbooks/airline/context/", {"task": "x", "budget_tokens": "lots"}
    )
    assert ctx.status_code == 400 and set(ctx.json()) == {"budget_tokens"}
    ctx = admin_client_api.get("/api/v1/playbooks/airline/context/")
    assert ctx.status_code == 400 and set(ctx.json()) == {"task"}
    rb = admin_client_api.post_json(
        "/api/v1/playbooks/airline/versions/42/rollback/", {}
    )
    assert rb.status_code == 404


def test_roles_and_namespaces(
    admin_client_api, agent_client, reviewer_client, other_client
):
    """Agents and reviewers may read and recall but not edit; another namespace's admin
    gets 404 for everything of this one."""
    create(admin_client_api)
    assert create(agent_client, slug="x").status_code == 403
    assert (
        reviewer_client.post_json(
            "/api/v1/playbooks/airline/strategies/",
            {"type": "helpful", "description": "x"},
        ).status_code
        == 403
    )
    assert (
        agent_client.post_json(
            "/api/v1/playbooks/airline/versions/1/rollback/", {}
        ).status_code
        == 403
    )
    for path in [
        "/api/v1/playbooks/airline/",
        "/api/v1/playbooks/airline/versions/",
        "/api/v1/playbooks/airline/context/?task=x",
    ]:
        assert other_client.get(path).status_code == 404
    assert (
        other_client.post_json(
            "/api/v1/playbooks/airline/versions/1/rollback/", {}
        ).status_code
        == 404
    )
    assert other_client.get("/api/v1/playbooks/").json()["count"] == 0


def test_playbook_list_query_count(admin_client_api, django_assert_num_queries):
    """The list costs the same few queries for three playbooks as for one."""
    ns = admin_client_api.namespace
    for slug in ("airline", "retail", "telecom"):
        pb = make_playbook(ns, slug)
        make_strategy(pb, f"{slug} advice")
    # auth (token + last_used stamp skipped within a minute), count, page, prefetch
    admin_client_api.get("/api/v1/playbooks/")
    with django_assert_num_queries(4):
        response = admin_client_api.get("/api/v1/playbooks/")
    assert [p["strategy_count"] for p in response.json()["results"]] == [1, 1, 1]


def test_recall_and_history_query_counts(agent_client, django_assert_num_queries):
    """Recall is a fixed number of queries whatever the number of strategies returned;
    so is the version history list."""
    pb = make_playbook(agent_client.namespace, "airline")
    for n in range(5):
        make_strategy(pb, f"Baggage allowance rule {n}.")
    agent_client.get("/api/v1/playbooks/airline/context/", {"task": "baggage"})
    # token, playbook, matches + fill (one UNION), RecallLog + last_recalled_at (one CTE)
    with django_assert_num_queries(4):
        body = agent_client.get(
            "/api/v1/playbooks/airline/context/", {"task": "baggage"}
        ).json()
    assert len(body["items"]) == 5
    with django_assert_num_queries(4):
        versions = agent_client.get("/api/v1/playbooks/airline/versions/").json()
    assert versions["count"] == 6


def test_skills_memories_policy_endpoints(admin_client_api, agent_client):
    """Skills are created, edited (new version + diff) and rolled back; memories list;
    the policy is read by anyone and written by admins."""
    assert (
        admin_client_api.post_json(
            "/api/v1/skills/", {"slug": "rebook", "text": "one\n"}
        ).status_code
        == 201
    )
    put = admin_client_api.put(
        "/api/v1/skills/rebook/", {"text": "one\ntwo\n"}, format="json"
    )
    assert put.status_code == 200 and put.json()["version"] == 2
    versions = agent_client.get("/api/v1/skills/rebook/versions/").json()["results"]
    assert "+two" in versions[0]["diff"]
    rb = admin_client_api.post_json("/api/v1/skills/rebook/versions/1/rollback/", {})
    assert rb.status_code == 201 and rb.json()["text"] == "one\n"
    assert (
        agent_client.put(
            "/api/v1/policy/", {"denied_tools": ["rm"]}, format="json"
        ).status_code
        == 403
    )
    assert admin_client_api.put(
        "/api/v1/policy/", {"denied_tools": ["rm"]}, format="json"
    ).json()["denied_tools"] == ["rm"]
    assert agent_client.get("/api/v1/policy/").json()["denied_tools"] == ["rm"]
    assert agent_client.get("/api/v1/memories/").json()["count"] == 0


def test_candidate_preview_and_revert(agent_client, reviewer_client, other_client):
    """Preview shows the coming version; a reviewer reverts an applied candidate (a new
    version without it); reverting twice is 409; agents may not; other namespaces 404."""
    pb = make_playbook(agent_client.namespace, "airline")
    candidate = CandidateFactory(
        namespace=pb.namespace, playbook=pb, content="Ask first."
    )
    preview = agent_client.get(f"/api/v1/candidates/{candidate.pk}/preview/").json()
    assert (preview["target"], preview["from_version"], preview["to_version"]) == (
        "playbook",
        1,
        2,
    )
    candidate_approve(
        namespace=pb.namespace, candidate_id=candidate.pk, actor=Actor("r")
    )
    url = f"/api/v1/candidates/{candidate.pk}/revert/"
    assert agent_client.post_json(url, {}).status_code == 403
    assert other_client.post_json(url, {}).status_code == 404
    response = reviewer_client.post_json(url, {"note": "auto-applied by mistake"})
    assert response.status_code == 200 and response.json()["version"] == 3
    assert reviewer_client.post_json(url, {}).status_code == 409
    assert agent_client.get("/api/v1/playbooks/airline/").json()["strategies"] == []


def test_recall_with_user_id_returns_memories(agent_client):
    """?user_id= adds the user's memories to the answer and the context."""
    from playbooks.memories import memory_create

    pb = make_playbook(agent_client.namespace, "airline")
    make_strategy(pb, "Check the baggage allowance.")
    memory_create(
        namespace=pb.namespace,
        kind="preference",
        user_id="mia",
        content="Prefers window seats.",
    )
    body = agent_client.get(
        "/api/v1/playbooks/airline/context/", {"task": "baggage", "user_id": "mia"}
    ).json()
    assert [m["content"] for m in body["memories"]] == ["Prefers window seats."]
    assert "Prefers window seats." in body["context"]


def test_strategies_take_and_show_the_lesson_shape(admin_client_api):
    """A strategy is written as text (its shape read from it, marked classified) or
    in the lesson shape; the API shows both and recall hands out the rendering."""
    make_playbook(admin_client_api.namespace, "airline")
    text = admin_client_api.post_json(
        "/api/v1/playbooks/airline/strategies/",
        {
            "type": "harmful",
            "description": "Promising a refund before it went through.",
        },
    )
    shaped = admin_client_api.post_json(
        "/api/v1/playbooks/airline/strategies/",
        {
            "type": "helpful",
            "polarity": "avoid",
            "when": "the user asks for a refund",
            "directive": "promise a date before `cancel_reservation` succeeded",
        },
    )
    assert (text.status_code, shaped.status_code) == (201, 201)
    items = {s["directive"]: s for s in shaped.json()["strategies"]}
    first = items["promising a refund before it went through"]
    assert (first["polarity"], first["shape_classified"]) == ("avoid", True)
    assert first["description"] == "Avoid promising a refund before it went through."
    second = items["promise a date before `cancel_reservation` succeeded"]
    assert second["shape_classified"] is False
    recall = admin_client_api.get(
        "/api/v1/playbooks/airline/context/",
        {"task": "The user asks for a refund of a cancelled reservation"},
    ).json()
    assert (
        "- When the user asks for a refund, do not promise a date before "
        "`cancel_reservation` succeeded." in recall["context"]
    )
    assert {i["polarity"] for i in recall["items"]} == {"avoid"}
    missing = admin_client_api.post_json(
        "/api/v1/playbooks/airline/strategies/", {"type": "helpful"}
    )
    assert missing.status_code == 400 and "description" in missing.json()
