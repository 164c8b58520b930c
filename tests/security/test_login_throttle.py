"""Console (and Django admin) logins are throttled per user and per client address:
after too many failures the answer is "Too many attempts, try again in N min" and the
password is not even checked; a successful login clears the user's count."""

import time

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def reviewer():
    return get_user_model().objects.create_user("rev", "rev@x.test", PASSWORD)


@pytest.fixture
def password_checks(monkeypatch):
    """How many times a login form asked for a password check."""
    import django.contrib.auth.forms as forms

    calls = []
    real = forms.authenticate

    def counting(*args, **kwargs):
        calls.append(kwargs.get("username"))
        return real(*args, **kwargs)

    monkeypatch.setattr(forms, "authenticate", counting)
    return calls


def _login(client, username, password, address="203.0.113.5", path="/login/"):
    return client.post(
        path, {"username": username, "password": password}, REMOTE_ADDR=address
    )


def test_sixty_wrong_passwords_then_the_right_one_does_not_log_in(
    client, reviewer, password_checks
):
    """Issue 15: 60 wrong passwords in 14 s were all answered and then the right one
    logged in. Now the 6th attempt is refused (429, with Retry-After and the wait in
    minutes) without a password check, and so is the right password."""
    for _ in range(5):
        response = _login(client, "rev", "wrong")
        assert response.status_code == 200 and b"didn" in response.content
    checks = len(password_checks)
    for _ in range(55):
        refused = _login(client, "rev", "wrong")
        assert refused.status_code == 429
    assert b"Too many attempts, try again in 15 min" in refused.content
    assert 840 <= int(refused["Retry-After"]) <= 900
    right = _login(client, "rev", PASSWORD)
    assert right.status_code == 429
    assert len(password_checks) == checks  # none after the limit
    assert "_auth_user_id" not in client.session


def test_the_user_limit_holds_across_addresses_and_ends_with_the_window(
    client, reviewer, monkeypatch
):
    """Five failures for one user from five addresses lock that user (not others);
    after the 15-minute window the right password logs in."""
    for n in range(5):
        _login(client, "rev", "wrong", address=f"198.51.100.{n}")
    assert _login(client, "rev", PASSWORD, address="198.51.100.99").status_code == 429
    get_user_model().objects.create_user("other", "o@x.test", PASSWORD)
    assert _login(client, "other", PASSWORD, address="198.51.100.99").status_code == 302
    client.logout()
    later = time.time() + 15 * 60 + 1
    monkeypatch.setattr(time, "time", lambda: later)
    response = _login(client, "rev", PASSWORD)
    assert response.status_code == 302 and "_auth_user_id" in client.session


def test_the_address_limit_stops_spraying_many_users(client, reviewer):
    """20 failures from one address over many user names lock that address for
    every user (even with the right password); another address is not affected."""
    for n in range(20):
        assert _login(client, f"user{n}", "wrong").status_code == 200
    assert _login(client, "rev", PASSWORD).status_code == 429
    assert _login(client, "rev", PASSWORD, address="192.0.2.77").status_code == 302


def test_a_successful_login_clears_the_users_count(client, reviewer):
    """Four failures, a success, four more failures: still allowed (the success
    started the count again); the fifth after it locks."""
    for _ in range(4):
        _login(client, "rev", "wrong")
    assert _login(client, "rev", PASSWORD).status_code == 302
    client.logout()
    for _ in range(4):
        assert _login(client, "rev", "wrong").status_code == 200
    assert _login(client, "rev", "wrong").status_code == 200  # the 5th failure
    assert _login(client, "rev", PASSWORD).status_code == 429


def test_user_names_are_counted_case_insensitively(client, reviewer):
    """'Rev', 'REV' and ' rev' are one user for the count."""
    for name in ("Rev", "REV", "rev", "rEv", "rev"):
        _login(client, name, "wrong")
    assert _login(client, "rev", PASSWORD).status_code == 429


def test_the_django_admin_login_is_throttled_too(client, password_checks):
    """The admin site's login form shares the counts."""
    get_user_model().objects.create_superuser("root", "r@x.test", PASSWORD)
    for _ in range(5):
        _login(client, "root", "wrong", path="/admin/login/")
    checks = len(password_checks)
    response = _login(client, "root", PASSWORD, path="/admin/login/")
    assert b"Too many attempts" in response.content
    assert len(password_checks) == checks
    assert "_auth_user_id" not in client.session
