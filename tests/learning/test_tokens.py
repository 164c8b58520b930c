"""API tokens: create_token, hashed storage, one namespace and one role each."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from learning.models import ApiToken, Namespace
from learning.services.tokens import token_create

pytestmark = pytest.mark.django_db


def test_create_token_prints_the_token_last_and_creates_the_namespace():
    """`create_token NAME --namespace NS --role ROLE` creates the namespace if needed
    and prints a working token as its last line of output."""
    out, err = StringIO(), StringIO()
    call_command(
        "create_token",
        "ci-bot",
        "--namespace",
        "newco",
        "--role",
        "reviewer",
        stdout=out,
        stderr=err,
    )
    raw = out.getvalue().strip().splitlines()[-1]
    token = ApiToken.objects.get(name="ci-bot")
    assert Namespace.objects.filter(slug="newco").exists()
    assert (token.namespace.slug, token.role) == ("newco", "reviewer")
    assert raw.startswith("fw_") and "not shown again" in err.getvalue()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/v1/runs/").status_code == 200


def test_only_a_hash_of_the_token_is_stored():
    """The raw key is never stored: only its SHA-256 and a short prefix."""
    token, raw = token_create(name="t", namespace_slug="acme", role="agent")
    assert token.key_hash == ApiToken.hash_key(raw) and len(token.key_hash) == 64
    assert raw not in {token.key_hash, token.key_prefix}
    assert not ApiToken.objects.filter(key_hash=raw).exists()
    assert token_create(name="t", namespace_slug="acme", role="agent")[1] != raw


def test_an_unknown_role_is_refused():
    """Roles are agent, reviewer, admin; anything else is an error and stores nothing."""
    with pytest.raises(ValueError, match="unknown role"):
        token_create(name="t", namespace_slug="acme", role="root")
    with pytest.raises(CommandError):
        call_command("create_token", "t", "--namespace", "acme", "--role", "root")
    assert not ApiToken.objects.exists()


def test_the_token_name_is_the_default_agent(agent_client):
    """A run posted without `agent` is attributed to the token's name."""
    body = agent_client.post_json("/api/v1/runs/", {"task_description": "x"}).json()
    assert body["agent"] == "agent-1"
