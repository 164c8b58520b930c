"""The reviewer console in real Chromium: login, filtering, keyboard approve, bulk deny,
a conflict resolved side by side, and two reviewers on one candidate."""

import re

import pytest
from playwright.sync_api import expect

from learning.models import CandidateEvidence, LearningCandidate
from playbooks.models import Strategy
from review.models import AuditEvent
from tests.factories import (
    CandidateFactory,
    FeedbackFactory,
    NamespaceFactory,
    StepFactory,
    TrajectoryFactory,
    make_playbook,
    make_strategy,
)
from tests.review.conftest import make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def acme(transactional_db):
    return NamespaceFactory(slug="acme")


@pytest.fixture
def rita(acme):
    return make_user("rita", acme, "reviewer")


@pytest.fixture
def airline(acme):
    return make_playbook(acme, slug="airline")


def test_login_lands_on_the_queue(browser, live_server, rita, acme, screenshot):
    CandidateFactory(namespace=acme, content="Confirm the cabin class before changing")
    page = browser.new_page()
    try:
        page.goto(live_server.url + "/")
        expect(page).to_have_url(f"{live_server.url}/login/?next=/")
        screenshot(page, "login")
        page.fill("#id_username", "rita")
        page.fill("#id_password", "wrong")
        page.click("button[type=submit]")
        expect(page.locator(".error-text")).to_contain_text("didn't match")
        page.fill("#id_username", "rita")
        page.fill("#id_password", "pw-rita")
        page.click("button[type=submit]")
        expect(page).to_have_url(live_server.url + "/")
        expect(page.locator("#queue-results")).to_contain_text(
            "Confirm the cabin class"
        )
        expect(page.locator("header.topbar")).to_contain_text("rita")
        screenshot(page, "queue")
    finally:
        page.close()


def test_filtering_updates_the_list_and_the_url(
    login_as, live_server, rita, acme, airline, screenshot
):
    CandidateFactory(
        namespace=acme,
        kind="preference",
        content="Prefers aisle seats",
        memory_scope="user",
        user_id="mia",
    )
    CandidateFactory(
        namespace=acme,
        kind="strategy_helpful",
        playbook=airline,
        content="Look up the reservation before changing it",
    )
    CandidateFactory(
        namespace=acme,
        kind="strategy_harmful",
        playbook=airline,
        content="Never offer a refund for basic economy",
        max_severity="block",
        audit={
            "hygiene": [{"severity": "block", "message": "x", "related": []}],
            "conflict": [],
            "duplicate": [],
        },
    )
    page = login_as(rita)
    page.goto(live_server.url + "/")
    rows = page.locator("#queue-results tbody tr[data-id]")
    expect(rows).to_have_count(3)
    page.select_option("select[name=kind]", "preference")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Prefers aisle seats")
    expect(page).to_have_url(re.compile(r"[?&]kind=preference(&|$)"))
    page.select_option("select[name=kind]", "")
    page.select_option("select[name=severity]", "block")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Never offer a refund")
    page.select_option("select[name=severity]", "")
    page.fill("#f-q", "look up the")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Look up the reservation")
    expect(page.locator("#status-tabs .tab.active .count")).to_have_text("1")
    screenshot(page, "queue-filtered")
    # The filter state lives in the URL: reloading shows the same list.
    page.reload()
    expect(rows).to_have_count(1)
    expect(page.locator("#f-q")).to_have_value("look up the")
    assert not page.js_errors


def test_keyboard_triage_approve_and_deny(
    login_as, live_server, rita, acme, airline, screenshot
):
    """j/k move, `a` approves (applied as a new playbook version), `d` asks for a reason
    and denies; keys typed into the search box are ignored."""
    older = CandidateFactory(
        namespace=acme,
        playbook=airline,
        content="Verify the passenger's identity before changes",
    )
    newer = CandidateFactory(
        namespace=acme, playbook=airline, content="Offer the cheapest fare first"
    )
    page = login_as(rita)
    page.goto(live_server.url + "/")
    first, second = (
        page.locator(f"#cand-{newer.pk}"),
        page.locator(f"#cand-{older.pk}"),
    )
    expect(first).to_have_attribute("class", "row st-pending selected")
    page.keyboard.press("j")
    expect(second).to_have_attribute("class", "row st-pending selected")
    page.keyboard.press("k")
    expect(first).to_have_attribute("class", "row st-pending selected")
    # Typing in the search box is not a command.
    page.focus("#f-q")
    page.keyboard.type("ad")
    page.keyboard.press("Escape")
    page.fill("#f-q", "")
    page.keyboard.press("Escape")
    # The list was reloaded for "ad" and again for the cleared box: a key pressed
    # while the "ad" list shows has no rows to act on, so wait for the cleared one.
    expect(page).to_have_url(re.compile(r"[?&]q=&"))
    expect(page.locator("#queue-results tbody tr[data-id]")).to_have_count(2)
    assert LearningCandidate.objects.filter(status="pending").count() == 2
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    screenshot(page, "keyboard-help")
    page.keyboard.press("Escape")
    # Keys are ignored while a dialog is open, and under load the help can still be
    # open when the next key arrives: wait for it to close.
    expect(page.locator("#help")).not_to_be_visible()
    page.keyboard.press("a")
    expect(page.locator(f"#cand-{newer.pk} .badge.st-applied")).to_be_visible()
    expect(page.locator("#toasts")).to_contain_text(
        f"Candidate {newer.pk} applied (version 2)"
    )
    # The selection moved on to the next row: deny it with a reason.
    expect(page.locator(f"#cand-{older.pk}")).to_have_attribute(
        "class", "row st-pending selected"
    )
    page.keyboard.press("d")
    expect(page.locator("#deny-dialog")).to_be_visible()
    page.fill("#deny-reason", "Identity checks are in the login flow")
    screenshot(page, "keyboard-deny-dialog")
    page.click("#deny-dialog button[value=deny]")
    expect(page.locator(f"#cand-{older.pk} .badge.st-denied")).to_be_visible()
    expect(page.locator("#status-tabs [data-status=pending] .count")).to_have_text("0")
    screenshot(page, "keyboard-after")
    newer.refresh_from_db()
    older.refresh_from_db()
    assert (newer.status, newer.applied_version) == ("applied", 2)
    assert older.status == "denied"
    assert older.decision_note == "Identity checks are in the login flow"
    assert airline.strategies.filter(
        description__startswith="Offer the cheapest"
    ).exists()
    assert not page.js_errors


def test_bulk_deny_with_one_note(login_as, live_server, rita, acme, screenshot):
    batch = CandidateFactory.create_batch(3, namespace=acme, kind="procedure")
    keep = CandidateFactory(namespace=acme, kind="preference", content="Keep me")
    page = login_as(rita)
    page.goto(live_server.url + "/")
    for c in batch[:2]:
        page.check(f"#cand-{c.pk} input[name=ids]")
    expect(page.locator("[data-selected-count]")).to_have_text("2 selected")
    page.fill("#bulk-form input[name=note]", "Procedures belong in the skill, not here")
    screenshot(page, "bulk-selected")
    page.click("#bulk-form button[value=deny]")
    expect(page.locator("#toasts")).to_contain_text("Denied 2.")
    expect(page.locator("#queue-results tbody tr[data-id]")).to_have_count(2)
    # Then every match of a filter at once.
    page.select_option("select[name=kind]", "procedure")
    expect(page.locator("#queue-results tbody tr[data-id]")).to_have_count(1)
    page.check("input[name=all_matching]")
    page.fill("#bulk-form input[name=note]", "All procedures: no")
    page.click("#bulk-form button[value=deny]")
    expect(page.locator("#toasts")).to_contain_text("Denied 1.")
    screenshot(page, "bulk-after")
    statuses = dict(LearningCandidate.objects.values_list("pk", "status"))
    assert [statuses[c.pk] for c in batch] == ["denied"] * 3
    assert statuses[keep.pk] == "pending"
    notes = set(AuditEvent.objects.filter(action="deny").values_list("note", flat=True))
    assert notes == {"Procedures belong in the skill, not here", "All procedures: no"}


def test_resolve_a_conflict_side_by_side(
    login_as, live_server, rita, acme, airline, screenshot
):
    old = make_strategy(airline, "Never rebook basic economy passengers")
    run = TrajectoryFactory(
        namespace=acme, external_id="tb-airline-17-0", status="success"
    )
    for i, text in enumerate(
        [
            "user: my flight was cancelled",
            "get_reservation_details(reservation_id=4WQ150)",
            "The airline cancelled: rebooking is allowed",
            "book_reservation(...)",
        ]
    ):
        StepFactory(
            trajectory=run,
            index=i,
            description=text,
            type="tool_call" if "(" in text else "message",
        )
    FeedbackFactory(trajectory=run, score=0.9, message="resolved on first contact")
    c = CandidateFactory(
        namespace=acme,
        playbook=airline,
        max_severity="warn",
        content="Rebook basic economy passengers when the airline cancels the flight",
        audit={
            "conflict": [
                {
                    "severity": "warn",
                    "message": "contradicts an applied strategy",
                    "related": [
                        {"type": "strategy", "id": old.pk, "text": old.description}
                    ],
                }
            ],
            "hygiene": [],
            "duplicate": [],
        },
    )
    CandidateEvidence.objects.create(candidate=c, trajectory=run, step_indexes=[2, 3])
    page = login_as(rita)
    page.goto(f"{live_server.url}/candidates/{c.pk}/")
    pair = page.locator(f"[data-conflict-item='{old.pk}']")
    expect(pair.locator(".side.new")).to_contain_text("when the airline cancels")
    # The curated strategy as recall renders it (the lesson shape: "Never" → avoid).
    expect(pair.locator(".side.old")).to_contain_text("not rebook basic economy")
    expect(page.locator("#evidence .step.hl")).to_have_count(2)
    expect(page.locator("#evidence")).to_contain_text("resolved on first contact")
    expect(page.locator("#preview")).to_contain_text("v2 → v3")
    expect(pair.locator(".replace-preview .del")).to_contain_text(
        "not rebook basic economy"
    )
    screenshot(page, "conflict-side-by-side")
    pair.locator("[data-action=replace]").click()
    expect(page.locator("[data-decided]")).to_contain_text("Applied by rita")
    screenshot(page, "conflict-resolved")
    c.refresh_from_db()
    old.refresh_from_db()
    assert c.status == "applied" and c.replaces_strategy_id == old.pk
    assert not old.active
    assert Strategy.objects.get(playbook=airline, active=True).description.startswith(
        "Rebook"
    )
    # The evidence link opens the run's timeline with the same steps highlighted.
    page.click("#evidence .ev-head a")
    expect(page.locator("#timeline .step.hl")).to_have_count(2)
    screenshot(page, "run-timeline")
    page.click("nav.mainnav >> text=Activity")
    expect(page.locator("#activity-results")).to_contain_text(f"candidate #{c.pk}")
    expect(page.locator("#activity-results")).to_contain_text(
        f"Replaces strategy #{old.pk}"
    )
    screenshot(page, "activity")
    page.click("nav.mainnav >> text=Dashboard")
    expect(page.locator("svg.chart")).to_have_count(3)
    screenshot(page, "dashboard")
    assert not page.js_errors


def test_two_reviewers_on_one_candidate(
    login_as, live_server, rita, acme, airline, screenshot
):
    """The second reviewer sees who holds the candidate; when both act anyway, exactly
    one decision wins and the other gets a clear message — never a double apply."""
    otto = make_user("otto", acme, "reviewer")
    c = CandidateFactory(
        namespace=acme, playbook=airline, content="Ask for the booking code"
    )
    first = login_as(rita)
    second = login_as(otto)
    first.goto(f"{live_server.url}/candidates/{c.pk}/")
    expect(first.locator("[data-lease-mine]")).to_be_visible()
    second.goto(f"{live_server.url}/candidates/{c.pk}/")
    expect(second.locator("[data-lease-other]")).to_contain_text("rita is reviewing")
    screenshot(second, "concurrent-lease")
    first.fill("[data-deny-form] textarea", "Agents already ask for it")
    first.click("[data-deny-form] button[type=submit]")
    expect(first.locator("[data-decided]")).to_contain_text("Denied by rita")
    # Otto's page is stale: he approves anyway and is refused.
    second.click("[data-approve-form] button[type=submit]")
    expect(second.locator("#toasts")).to_contain_text(
        f"Candidate {c.pk} was already denied by rita"
    )
    expect(second.locator("[data-decided]")).to_contain_text("Denied by rita")
    screenshot(second, "concurrent-refused")
    c.refresh_from_db()
    assert c.status == "denied" and c.decided_by == "rita"
    assert (
        AuditEvent.objects.filter(
            candidate=c, action__in=["approve", "deny", "apply"]
        ).count()
        == 1
    )
    assert airline.strategies.count() == 0
    # Leaving a candidate gives the lease back straight away.
    other = CandidateFactory(namespace=acme, content="Quote the fare difference")
    first.goto(f"{live_server.url}/candidates/{other.pk}/")
    expect(first.locator("[data-lease-mine]")).to_be_visible()
    assert LearningCandidate.objects.get(pk=other.pk).leased_by_id == rita.pk
    first.goto(f"{live_server.url}/")
    for _ in range(50):
        if LearningCandidate.objects.get(pk=other.pk).leased_by_id is None:
            break
        first.wait_for_timeout(100)
    assert LearningCandidate.objects.get(pk=other.pk).leased_by_id is None


def test_open_edit_then_approve_from_the_keyboard(
    login_as, live_server, rita, acme, airline, screenshot
):
    """`o` opens the selected candidate, `e` unfolds the edit form (the edit is recorded
    with before/after), `a` approves the edited text."""
    c = CandidateFactory(namespace=acme, playbook=airline, content="Check fares")
    page = login_as(rita)
    page.goto(live_server.url + "/")
    expect(page.locator(f"#cand-{c.pk}")).to_have_class(re.compile(r"\bselected\b"))
    page.keyboard.press("o")
    expect(page).to_have_url(f"{live_server.url}/candidates/{c.pk}/#evidence")
    page.keyboard.press("e")
    expect(page.locator("#edit textarea[name=content]")).to_be_focused()
    page.fill("#edit textarea[name=content]", "Check the fare rules before rebooking")
    page.fill("#edit input[name=note]", "more precise")
    page.click("#edit button[type=submit]")
    # the edited text is the lesson as recall will hand it out (its rendering)
    expect(page.locator("[data-content]")).to_have_text(
        "Check the fare rules before rebooking."
    )
    expect(page.locator("#history")).to_contain_text("more precise")
    screenshot(page, "edited")
    page.keyboard.press("a")
    expect(page.locator("[data-decided]")).to_contain_text("Applied by rita")
    c.refresh_from_db()
    assert c.status == "applied"
    assert (
        airline.strategies.get().description == "Check the fare rules before rebooking."
    )
    edit = AuditEvent.objects.get(candidate=c, action="edit")
    assert edit.data["before"]["content"] == "Check fares"
    assert not page.js_errors
