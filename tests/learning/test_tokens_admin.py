"""The Django admin: every model's pages render, runs are read-only, tokens revoke."""

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.urls import reverse

from learning.models import ApiToken, Trajectory
from tests.factories import (
    CandidateFactory,
    FeedbackFactory,
    StepFactory,
    TrajectoryFactory,
    make_token,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser(
        "root", "root@example.com", "pw-root-123"
    )
    client.force_login(user)
    return client


def test_every_registered_model_lists_and_shows(staff_client):
    """Each changelist answers 200 (with rows), and so does a run's change page with
    its steps and feedback inline."""
    run = TrajectoryFactory()
    StepFactory(trajectory=run, index=0)
    FeedbackFactory(trajectory=run)
    CandidateFactory(namespace=run.namespace)
    make_token(namespace=run.namespace.slug)
    for model in admin.site._registry:
        url = reverse(
            f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"
        )
        assert staff_client.get(url).status_code == 200, url
    page = staff_client.get(reverse("admin:learning_trajectory_change", args=[run.pk]))
    assert page.status_code == 200
    assert "get_reservation_details" in page.content.decode()


def test_runs_cannot_be_added_or_deleted_in_the_admin(staff_client):
    """Runs change only through the API's services."""
    run = TrajectoryFactory()
    assert staff_client.get(reverse("admin:learning_trajectory_add")).status_code == 403
    delete = reverse("admin:learning_trajectory_delete", args=[run.pk])
    assert staff_client.post(delete, {"post": "yes"}).status_code == 403
    assert Trajectory.objects.filter(pk=run.pk).exists()


def test_tokens_are_revoked_from_the_admin(staff_client, client):
    """The revoke action locks a token out of the API."""
    token, raw = make_token(namespace="acme")
    response = staff_client.post(
        reverse("admin:learning_apitoken_changelist"),
        {"action": "revoke", "_selected_action": [token.pk]},
    )
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    api = client.get("/api/v1/runs/", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.status_code == 401
    assert ApiToken.objects.count() == 1
