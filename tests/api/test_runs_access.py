"""Who may call the runs API: tokens, roles and namespace isolation on every endpoint."""

import pytest
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory
from rest_framework.views import APIView

from learning.api.auth import allows
from learning.models import ApiToken, Feedback, Step, Trajectory
from tests.factories import StepFactory, TrajectoryFactory

pytestmark = pytest.mark.django_db

RUNS = "/api/v1/runs/"


@pytest.fixture
def acme_run(agent_client):
    run = TrajectoryFactory(
        namespace=agent_client.namespace,
        status="running",
        success_score=None,
        effective_score=None,
        external_id="acme-secret-run",
    )
    StepFactory(trajectory=run, index=0)
    return run


@pytest.fixture
def intruder(api_factory):
    """An agent token of another namespace."""
    return api_factory("globex", "agent", "globex-agent")


def test_another_namespace_cannot_read_a_run(acme_run, intruder, other_client):
    """Detail is 404 (not 403) for any token of another namespace, agent or admin."""
    for client in (intruder, other_client):
        response = client.get(f"{RUNS}{acme_run.id}/")
        assert response.status_code == 404
        assert "acme-secret-run" not in response.content.decode()


def test_another_namespace_lists_nothing_of_ours(acme_run, intruder, other_client):
    """The list only ever shows the token's namespace, whatever the filters say."""
    for client in (intruder, other_client):
        for query in (
            "",
            "?external_id=acme-secret-run",
            "?status=running",
            f"?agent={acme_run.agent}",
        ):
            body = client.get(RUNS + query).json()
            assert body["count"] == 0 and body["results"] == []


def test_another_namespace_cannot_append_complete_or_give_feedback(acme_run, intruder):
    """Writes on another namespace's run are 404 and change nothing."""
    base = f"{RUNS}{acme_run.id}/"
    responses = [
        intruder.post_json(
            base + "steps/", {"steps": [{"type": "action", "description": "x"}]}
        ),
        intruder.post_json(
            base + "complete/", {"status": "success", "success_score": 1.0}
        ),
        intruder.post_json(
            base + "feedback/", {"feedback_type": "human", "score": 0.0}
        ),
    ]
    assert [r.status_code for r in responses] == [404, 404, 404]
    acme_run.refresh_from_db()
    assert acme_run.status == "running"
    assert Step.objects.filter(trajectory=acme_run).count() == 1
    assert Feedback.objects.count() == 0


def test_reposting_another_namespaces_external_id_creates_our_own(acme_run, intruder):
    """Idempotency never returns another namespace's run."""
    response = intruder.post_json(
        RUNS, {"external_id": "acme-secret-run", "task_description": "mine"}
    )
    assert response.status_code == 201
    assert response.json()["id"] != str(acme_run.id)
    assert response.json()["namespace"] == "globex"


@pytest.mark.parametrize(
    "header",
    [None, "Bearer fw_not-a-real-token", "Token abc", "Bearer", "Bearer a b"],
)
def test_missing_or_bad_credentials_are_401(header, acme_run):
    """No token, an unknown token or a malformed header: 401 JSON on list and detail."""
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    for url in (RUNS, f"{RUNS}{acme_run.id}/"):
        response = client.get(url)
        assert response.status_code == 401
        assert "detail" in response.json()
    assert (
        client.post(RUNS, {"task_description": "x"}, format="json").status_code == 401
    )


def test_a_revoked_token_is_refused(agent_client):
    """Revoking a token locks it out at once."""
    ApiToken.objects.filter(pk=agent_client.token.pk).update(revoked_at=timezone.now())
    assert agent_client.get(RUNS).status_code == 401


def test_reviewer_and_admin_tokens_have_the_agent_rights(
    reviewer_client, admin_client_api
):
    """Roles are ranked: reviewer and admin tokens can also post and read runs."""
    for client in (reviewer_client, admin_client_api):
        created = client.post_json(
            RUNS, {"task_description": f"by {client.token.role}"}
        )
        assert created.status_code == 201
        assert client.get(f"{RUNS}{created.json()['id']}/").status_code == 200
    assert Trajectory.objects.count() == 2


class _ReviewOnly(APIView):
    permission_classes = [allows("candidates.review")]

    def post(self, request):
        return Response({"ok": True})


class _AdminOnly(APIView):
    permission_classes = [allows("playbooks.edit")]

    def post(self, request):
        return Response({"ok": True})


@pytest.mark.parametrize(
    "role, review_code, admin_code",
    [("agent", 403, 403), ("reviewer", 200, 403), ("admin", 200, 200)],
)
def test_role_permissions_rank_agent_reviewer_admin(
    api_factory, role, review_code, admin_code
):
    """The role table (learning.access) through the API's permission: review and
    playbook-editing actions refuse lower roles with a 403 that names the role."""
    client = api_factory("acme", role, f"{role}-x")
    header = client._credentials["HTTP_AUTHORIZATION"]
    factory = APIRequestFactory()
    review = _ReviewOnly.as_view()(
        factory.post("/x", {}, format="json", HTTP_AUTHORIZATION=header)
    )
    admin = _AdminOnly.as_view()(
        factory.post("/x", {}, format="json", HTTP_AUTHORIZATION=header)
    )
    assert (review.status_code, admin.status_code) == (review_code, admin_code)
    if review_code == 403:
        assert "reviewer" in str(review.data["detail"])


def test_one_role_table_serves_api_and_console():
    """Every action has one floor, read by the API and the console alike."""
    from learning.access import ACTIONS, role_allows

    assert role_allows("reviewer", "candidates.revert")
    assert not role_allows("agent", "candidates.review")
    assert not role_allows("reviewer", "playbooks.edit")
    assert all(role_allows("admin", action) for action in ACTIONS)
    assert not role_allows(None, "runs.write")
