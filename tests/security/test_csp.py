"""Content-Security-Policy: every page is served with a policy that allows only this
server's own scripts, styles, images and connections (no inline or evaluated script).
That the console, the Django admin and the API docs page work under it, and that the
docs page keeps a token out of localStorage, is shown in real Chromium:
tests/e2e/test_csp_browser.py."""

import pytest

from tests.factories import NamespaceFactory
from tests.review.conftest import make_user

pytestmark = pytest.mark.django_db


def _directives(response) -> dict[str, list[str]]:
    policy = response.headers.get("Content-Security-Policy", "")
    out = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


@pytest.mark.parametrize("path", ["/login/", "/api/v1/docs/", "/admin/login/"])
def test_pages_carry_a_policy_without_inline_script(client, path):
    """Public pages answer with a policy: scripts only from 'self' (no
    'unsafe-inline', no 'unsafe-eval'), no plugins, no framing, forms and base URL
    pinned to this origin."""
    response = client.get(path)
    assert response.status_code == 200
    policy = _directives(response)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]
    assert "'unsafe-inline'" not in policy.get("style-src", [])
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"] and policy["form-action"] == ["'self'"]


def test_console_pages_and_api_answers_carry_it_too(client):
    """A logged-in console page, and an API answer, have the same header."""
    acme = NamespaceFactory(slug="acme")
    client.force_login(make_user("rita", acme, "reviewer"))
    assert "script-src 'self'" in client.get("/").headers["Content-Security-Policy"]
    assert client.get("/healthz").headers["Content-Security-Policy"]


def test_the_docs_page_does_not_persist_the_token():
    """Swagger UI is configured not to keep the authorization in localStorage."""
    from django.conf import settings

    assert settings.SPECTACULAR_SETTINGS["SWAGGER_UI_SETTINGS"].get(
        "persistAuthorization"
    ) in (None, False)
