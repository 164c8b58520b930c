"""CSRF: every console POST is refused without the token and served with it."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from learning.models import Membership, Namespace
from tests.factories import CandidateFactory
from tests.security.test_access_matrix import CONSOLE, _url, _world

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_browser():
    user = get_user_model().objects.create_user(
        username="csrf-admin", password="pw-123456789"
    )
    namespace = Namespace.objects.create(slug="acme")
    Membership.objects.create(user=user, namespace=namespace, role="admin")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client, _world(namespace, "csrf")


def test_every_console_post_without_a_csrf_token_is_refused(admin_browser):
    """A logged-in admin's browser tricked into posting to any console action (or the
    logout) without the CSRF token gets 403 and nothing changes."""
    client, world = admin_browser
    posts = [route for route, methods in CONSOLE.items() if "POST" in methods]
    assert len(posts) > 10
    for route in posts:
        response = client.post(
            _url(route, world), {"note": "forged", "confidence": "0.9"}
        )
        assert response.status_code == 403, (
            f"{route} accepted a POST without CSRF token"
        )
        assert b"CSRF" in response.content
    world["candidate"].refresh_from_db()
    assert world["candidate"].status == "pending"


def test_login_form_needs_the_csrf_token():
    """The login form itself is protected (no login CSRF)."""
    get_user_model().objects.create_user(username="victim", password="pw-123456789")
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/login/", {"username": "victim", "password": "pw-123456789"}
    )
    assert response.status_code == 403


def test_a_console_post_with_the_csrf_token_goes_through(admin_browser):
    """With the token from the page (form field or htmx header) the same action works:
    the 403s above are the CSRF check, not a broken view."""
    client, world = admin_browser
    candidate = CandidateFactory(
        namespace=world["namespace"], content="Ask for the booking code"
    )
    page = client.get(f"/candidates/{candidate.pk}/")
    assert page.status_code == 200
    token = client.cookies["csrftoken"].value
    html = page.content.decode()
    assert re.search(r'name="csrfmiddlewaretoken"|x-csrftoken', html, re.I)
    response = client.post(
        f"/candidates/{candidate.pk}/deny/",
        {"note": "not useful"},
        HTTP_X_CSRFTOKEN=token,
    )
    assert response.status_code in (200, 302), response.status_code
    candidate.refresh_from_db()
    assert candidate.status == "denied"
