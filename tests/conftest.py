import pytest
from rest_framework.test import APIClient

from tests.factories import make_token


class TokenClient(APIClient):
    """An API client that sends one bearer token and JSON by default."""

    def __init__(self, raw: str, token, **kwargs):
        super().__init__(**kwargs)
        self.token = token
        self.namespace = token.namespace
        self.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")

    def post_json(self, path, data=None, **kwargs):
        return self.post(path, data, format="json", **kwargs)


@pytest.fixture
def api_factory(db):
    def _make(namespace: str = "acme", role: str = "agent", name: str | None = None):
        token, raw = make_token(namespace=namespace, role=role, name=name)
        return TokenClient(raw, token)

    return _make


@pytest.fixture
def agent_client(api_factory):
    return api_factory("acme", "agent", "agent-1")


@pytest.fixture
def reviewer_client(api_factory):
    return api_factory("acme", "reviewer", "reviewer-1")


@pytest.fixture
def admin_client_api(api_factory):
    return api_factory("acme", "admin", "admin-1")


@pytest.fixture
def other_client(api_factory):
    """An admin of another namespace: must see nothing of acme's."""
    return api_factory("elsewhere", "admin", "other-admin")


@pytest.fixture(autouse=True)
def audit_caches_clear():
    """Word statistics live in a test's rolled-back transaction (ANALYZE inside it):
    no test may see another's, so the per-process audit caches start empty."""
    from learning.audits.cache import caches_clear

    caches_clear()
    yield
