"""The rollout in the console, in real Chromium: an admin reads a running rollout's
cohorts and estimate, cancels and then accepts the promote dialog (htmx swaps the
panel), sets a policy, aborts the next canary, and reads on the history page which
versions were production and why they left."""

import pytest
from playwright.sync_api import expect

from learning.models import Trajectory
from playbooks.models import Playbook, RolloutPolicy
from playbooks.rollout import rollout_policy_set
from review.services import Actor, candidate_approve
from tests.factories import (
    CandidateFactory,
    NamespaceFactory,
    TrajectoryFactory,
    make_playbook,
    make_strategy,
)
from tests.review.conftest import make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def approve(pb, content):
    candidate = CandidateFactory(namespace=pb.namespace, playbook=pb, content=content)
    candidate_approve(
        namespace=pb.namespace, candidate_id=candidate.pk, actor=Actor("r")
    )


def runs(pb, version, successes, total):
    Trajectory.objects.bulk_create(
        [
            TrajectoryFactory.build(
                namespace=pb.namespace,
                playbook_versions=[f"{pb.slug}@{version}"],
                status="success" if i < successes else "failure",
                success_score=1.0 if i < successes else 0.0,
            )
            for i in range(total)
        ]
    )


@pytest.fixture
def canary(transactional_db):
    acme = NamespaceFactory(slug="acme")
    pb = make_playbook(acme, "airline")
    make_strategy(pb, "Look up the reservation before changing a flight.")
    rollout_policy_set(
        playbook=pb, share=0.3, min_runs_per_arm=50, margin=0.05, actor="ops"
    )
    approve(pb, "Confirm the cabin class before searching for flights.")
    runs(pb, 2, 30, 40)
    runs(pb, 3, 14, 16)
    pb.refresh_from_db()
    return pb


def test_promote_with_confirmation_then_policy_abort_and_history(
    login_as, live_server, canary, screenshot
):
    admin = make_user("ada", canary.namespace, "admin")
    page = login_as(admin)
    page.goto(f"{live_server.url}/playbooks/acme/airline/")
    panel = page.locator("#rollout")
    expect(panel.locator("#label-production")).to_have_text("version 2")
    expect(panel.locator("#label-canary")).to_have_text("version 3")
    expect(panel).to_contain_text("served to 30% of sessions")
    expect(panel.locator("tr[data-cohort=production]")).to_contain_text("40")
    expect(panel.locator("tr[data-cohort=canary]")).to_contain_text("88%")
    expect(panel.locator("#rollout-decision")).to_contain_text("waiting for runs")
    expect(panel.locator("#rollout-rule")).to_contain_text("first 50 of each")
    screenshot(page, "rollout-running")

    dialogs = []

    def dismiss(dialog):
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    panel.locator("[data-action=promote]").click()
    page.wait_for_timeout(300)
    assert dialogs == ["Promote version 3 to production?"]
    assert Playbook.objects.get(pk=canary.pk).production_version == 2

    page.once("dialog", lambda dialog: dialog.accept())
    panel.locator("[data-action=promote]").click()
    expect(page.locator("#rollout")).to_contain_text("last: promoted")
    expect(page.locator("#label-production")).to_have_text("version 3")
    expect(page).to_have_url(f"{live_server.url}/playbooks/acme/airline/")
    assert Playbook.objects.get(pk=canary.pk).production_version == 3

    # a stricter policy, then the next approval is a canary the admin aborts
    page.locator("#rollout summary").click()
    page.fill("#id_share", "0.2")
    page.fill("#id_min_runs_per_arm", "80")
    page.locator("#rollout-policy button[type=submit]:not([name])").click()
    expect(page.locator("#rollout")).to_contain_text("policy saved")
    policy = RolloutPolicy.objects.get()
    assert (policy.share, policy.min_runs_per_arm) == (0.2, 80)
    approve(canary, "Quote the fare difference before rebooking.")
    page.reload()
    expect(page.locator("#label-canary")).to_have_text("version 4")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("[data-action=abort]").click()
    expect(page.locator("#rollout")).to_contain_text("last: rolled back")
    expect(page.locator("#rollout")).to_contain_text("aborted by ada")
    expect(page.locator("#label-production")).to_have_text("version 3")
    expect(page.locator("#strategies")).not_to_contain_text("fare difference")
    screenshot(page, "rollout-aborted")

    page.goto(f"{live_server.url}/playbooks/acme/airline/history/")
    v2 = page.locator("#v2")
    expect(v2.locator(".production-spell")).to_contain_text(
        "replaced by version 3 (promoted by ada)"
    )
    expect(page.locator("#v3 .badge")).to_contain_text("production")
    expect(page.locator("#v3 .production-spell")).to_contain_text("until now")
    expect(page.locator("#v4 .trial")).to_contain_text("rolled back")
    expect(page.locator("#v4")).to_contain_text("Never production.")
    screenshot(page, "rollout-history")
    assert page.js_errors == []


def test_without_javascript_promote_asks_on_a_page(
    browser, live_server, canary, screenshot
):
    """With JavaScript off the plain form leads to a confirmation page; confirming
    there promotes (CSRF token in both forms)."""
    from django.conf import settings
    from django.test import Client

    admin = make_user("ada", canary.namespace, "admin")
    client = Client()
    client.force_login(admin)
    context = browser.new_context(java_script_enabled=False)
    context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": live_server.url,
            }
        ]
    )
    page = context.new_page()
    try:
        page.goto(f"{live_server.url}/playbooks/acme/airline/")
        page.locator("[data-action=promote]").click()
        expect(page.locator("main")).to_contain_text("Promote version 3 to production?")
        assert Playbook.objects.get(pk=canary.pk).production_version == 2
        screenshot(page, "rollout-confirm-nojs")
        page.fill("#note", "checked by hand")
        page.locator("button.ok").click()
        expect(page.locator("#label-production")).to_have_text("version 3")
        expect(page.locator("#rollout")).to_contain_text("checked by hand")
    finally:
        context.close()
