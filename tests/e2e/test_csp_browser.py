"""The console, the Django admin and the API docs page work under the
Content-Security-Policy in real Chromium (no violation reported, no script error), and
the docs page keeps the token it is given out of localStorage."""

import re

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from tests.factories import (
    CandidateFactory,
    NamespaceFactory,
    make_playbook,
    make_token,
)
from tests.review.conftest import make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


CSP_LISTENER = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
    e => window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline')));
"""


def _watch(page):
    """Collect CSP violations (from the page's own event and from the console)."""
    page.add_init_script(CSP_LISTENER)
    console = []
    page.on(
        "console",
        lambda msg: (
            console.append(msg.text) if "Content Security Policy" in msg.text else None
        ),
    )
    page.csp_console = console
    return page


def _violations(page) -> list[str]:
    return page.evaluate("window.__csp || []") + page.csp_console


def test_the_console_works_under_the_policy(browser, live_server):
    """Log in through the form, filter the queue (an htmx request that swaps the
    list), open a candidate and the dashboard's charts: no violation, no error."""
    acme = NamespaceFactory(slug="acme")
    make_user("rita", acme, "reviewer")
    airline = make_playbook(acme, slug="airline")
    CandidateFactory(namespace=acme, playbook=airline, content="Check the fare rules")
    CandidateFactory(
        namespace=acme, kind="preference", content="Prefers aisle seats", user_id="mia"
    )
    page = _watch(browser.new_page())
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(live_server.url + "/login/")
        page.fill("#id_username", "rita")
        page.fill("#id_password", "pw-rita")
        page.click("button[type=submit]")
        page.wait_for_url(live_server.url + "/")
        rows = page.locator("#queue-results tbody tr[data-id]")
        rows.first.wait_for()
        assert rows.count() == 2
        page.select_option("select[name=kind]", "preference")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("Prefers aisle seats")
        page.goto(live_server.url + "/dashboard/")
        page.wait_for_load_state("networkidle")
        assert _violations(page) == [] and errors == []
    finally:
        page.close()


def test_the_admin_login_works_under_the_policy(browser, live_server):
    get_user_model().objects.create_superuser("root", "r@x.test", "pw-root-123")
    page = _watch(browser.new_page())
    try:
        page.goto(live_server.url + "/admin/login/")
        page.fill("#id_username", "root")
        page.fill("#id_password", "pw-root-123")
        page.click("input[type=submit]")
        page.wait_for_url(live_server.url + "/admin/")
        page.wait_for_load_state("networkidle")
        assert _violations(page) == []
    finally:
        page.close()


def test_the_api_docs_work_under_the_policy_and_forget_the_token(browser, live_server):
    """Swagger UI renders its operations and sends a request with the token under
    the policy; the token is never written to localStorage, so a reload forgets it."""
    _token, raw = make_token(namespace="acme", role="agent", name="docs-agent")
    context = browser.new_context()
    page = _watch(context.new_page())
    try:
        page.goto(live_server.url + "/api/v1/docs/")
        page.locator(".opblock").first.wait_for(timeout=20_000)
        page.click("button.authorize")
        page.fill(".modal-ux input[type=text], .modal-ux input:not([type])", raw)
        page.click(".modal-ux button.authorize")
        page.click(".modal-ux button.btn-done")
        # try GET /api/v1/runs/ with the token
        block = page.locator(".opblock-get", has_text=re.compile(r"/api/v1/runs/$"))
        block.first.click()
        page.click(".opblock.is-open button.try-out__btn")
        with page.expect_response(re.compile(r"/api/v1/runs/")) as answer:
            page.click(".opblock.is-open button.execute")
        assert answer.value.status == 200
        stored = page.evaluate("JSON.stringify(Object.assign({}, localStorage))")
        assert raw not in stored and "authorized" not in stored
        page.reload()
        page.locator(".opblock").first.wait_for(timeout=20_000)
        assert page.evaluate("localStorage.getItem('authorized')") is None
        assert _violations(page) == []
    finally:
        context.close()
