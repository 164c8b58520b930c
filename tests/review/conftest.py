"""Console fixtures: users with a role in a namespace, logged-in clients, candidates."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from learning.models import Membership
from tests.factories import NamespaceFactory


def make_user(username: str, namespace=None, role: str = "reviewer", **kwargs):
    user = get_user_model().objects.create_user(
        username=username, password="pw-" + username, **kwargs
    )
    if namespace is not None:
        Membership.objects.create(user=user, namespace=namespace, role=role)
    return user


@pytest.fixture
def acme(db):
    return NamespaceFactory(slug="acme")


@pytest.fixture
def reviewer(acme):
    return make_user("rita", acme, "reviewer")


@pytest.fixture
def admin_user(acme):
    return make_user("ada", acme, "admin")


@pytest.fixture
def rclient(reviewer):
    client = Client()
    client.force_login(reviewer)
    return client


@pytest.fixture
def aclient(admin_user):
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def fake_apply(monkeypatch):
    """candidate_apply that succeeds like the real one (it reports version 2), so
    review tests do not depend on the playbook writer; review marks it applied."""
    from playbooks.apply import Applied
    from review import services

    calls = []

    def candidate_apply(*, candidate, actor):
        calls.append((candidate.pk, actor, candidate.replaces_strategy_id))
        return Applied(version=2, data={"target": "playbook", "op": "add"})

    monkeypatch.setattr(services, "candidate_apply", candidate_apply)
    return calls


HX = {"HTTP_HX_REQUEST": "true"}


def hx(target: str = "", current_url: str = "http://testserver/"):
    headers = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": current_url}
    if target:
        headers["HTTP_HX_TARGET"] = target
    return headers
