"""The console for hundreds of decisions a day, in real Chromium: 50 candidates
triaged from the keyboard alone (approve, deny with a canned reason via Enter,
conflict, one undo), Esc in the search box, `n` past held candidates, rollbacks that
ask first, no horizontal overflow at 800 and 1,400 px, and a polarity changed in the
edit form read back from the recall preview."""

import random
import re

import pytest
from playwright.sync_api import expect

from learning.models import CandidateEvidence, LearningCandidate
from playbooks import skills
from playbooks.models import PlaybookVersion, Skill, Strategy
from review import services
from review.models import AuditEvent
from tests.factories import (
    CandidateFactory,
    NamespaceFactory,
    StepFactory,
    TrajectoryFactory,
    make_playbook,
    make_strategy,
)
from tests.review.conftest import make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TOOLS = """get_reservation_details book_reservation cancel_reservation calculate
update_reservation_flights update_reservation_baggages search_direct_flight
search_onestop_flight send_certificate transfer_to_human_agents get_user_details
list_all_airports""".split()
VERBS = """confirm check verify quote compare record escalate refund rebook validate
document summarise""".split()
NOUNS = """cabin fare voucher baggage lounge upgrade passenger ticket invoice seat
itinerary visa meal infant wheelchair pet loyalty membership insurance certificate
""".split()


def distinct_lessons(n: int) -> list[str]:
    """n lessons no two of which are near-identical (each names other tools and
    words), so the queue shows n rows, none grouped."""
    rng = random.Random(16)
    lessons = []
    for i in range(n):
        a, b = rng.sample(NOUNS, 2)
        lessons.append(
            f"{rng.choice(VERBS).capitalize()} the {a} with {TOOLS[i % len(TOOLS)]} "
            f"before you {rng.choice(VERBS)} the {b} (case {i} {'x' * (i % 7)})"
        )
    return lessons


@pytest.fixture
def acme(transactional_db):
    return NamespaceFactory(slug="acme")


@pytest.fixture
def rita(acme):
    return make_user("rita", acme, "reviewer")


@pytest.fixture
def airline(acme):
    return make_playbook(acme, slug="airline")


def selected_id(page) -> str:
    return page.evaluate(
        "() => { const r = document.querySelector("
        "'table[data-keyboard-list] tr.selected'); return r ? r.dataset.id : null; }"
    )


DECIDED = """([pk, status]) => {
    const row = document.getElementById("cand-" + pk);
    const sel = document.querySelectorAll("table[data-keyboard-list] tr.selected");
    return !!row && row.classList.contains("st-" + status)
        && sel.length === 1 && sel[0] !== row;
}"""


def wait_decided(page, pk: str, status: str, timeout_ms: int = 10_000):
    """The acted row shows its new status and the cursor has left it. Polled with
    `evaluate` (the console's CSP forbids the eval `wait_for_function` needs)."""
    for _ in range(timeout_ms // 20):
        if page.evaluate(DECIDED, [pk, status]):
            return
        page.wait_for_timeout(20)
    toasts = page.locator("#toasts").inner_text()
    raise AssertionError(f"candidate {pk} not {status}; toasts: {toasts!r}")


def test_fifty_candidates_triaged_from_the_keyboard(
    login_as, live_server, rita, acme, airline, screenshot
):
    """Approve, deny with a canned reason (`d`, `1`, Enter), mark conflicted, undo
    once: every row is acted on in order (none skipped, none twice, exactly one row
    highlighted), and each candidate ends as decided."""
    reason = services.canned_reason_save(
        namespace=acme, actor="ada", text="Bound to one run: names its ids"
    )
    lessons = distinct_lessons(50)
    for text in lessons:  # created oldest first: the queue lists the newest first
        CandidateFactory(namespace=acme, playbook=airline, content=text)
    page = login_as(rita)
    page.goto(live_server.url + "/")
    rows = page.locator("#queue-results tbody tr[data-id]")
    expect(rows).to_have_count(50)
    expect(page.locator("[data-group-members]")).to_have_count(0)
    order = [r.get_attribute("data-id") for r in rows.all()]
    assert selected_id(page) == order[0]

    pattern = ["a", "d", "c", "a", "a"]
    expected, acted = {}, []
    undo_at = 7
    i = 0
    while len(acted) < 50 + 1:  # one row decided twice: before and after the undo
        pk = selected_id(page)
        key = pattern[i % len(pattern)]
        i += 1
        acted.append(pk)
        if key == "d":
            page.keyboard.press("d")
            expect(page.locator("#deny-dialog")).to_be_visible()
            page.keyboard.press("1")
            expect(page.locator("#deny-reason")).to_have_value(reason.text)
            page.keyboard.press("Enter")
            status = "denied"
        else:
            page.keyboard.press(key)
            status = "applied" if key == "a" else "conflicted"
        if len(acted) < 51:
            wait_decided(page, pk, status)
        else:
            expect(page.locator(f"#cand-{pk}")).to_have_class(
                re.compile(rf"\bst-{status}\b")
            )
        expected[pk] = status
        if len(acted) == undo_at:
            page.keyboard.press("z")
            expect(page.locator("#toasts")).to_contain_text(
                "Undone: 1 back in the queue"
            )
            expect(page.locator(f"#cand-{pk}")).to_have_class(
                re.compile(r"\bst-pending\b.*\bselected\b|\bselected\b.*\bst-pending\b")
            )
            assert selected_id(page) == pk  # the cursor is back on it
            del expected[pk]
    screenshot(page, "triage-50-done")
    # In queue order, each row once, except the undone one acted on again.
    assert acted == order[:undo_at] + order[undo_at - 1 :]
    assert page.locator("table[data-keyboard-list] tr.selected").count() == 1
    statuses = {
        str(pk): status
        for pk, status in LearningCandidate.objects.values_list("pk", "status")
    }
    assert statuses == expected
    assert len(expected) == 50 and "pending" not in statuses.values()
    denied = LearningCandidate.objects.filter(status="denied")
    assert {c.decision_note for c in denied} == {reason.text}
    assert all(
        e.data.get("reason") == reason.pk
        for e in AuditEvent.objects.filter(action="deny")
    )
    applied = sum(1 for s in expected.values() if s == "applied")
    assert Strategy.objects.filter(playbook=airline, active=True).count() == applied
    assert AuditEvent.objects.filter(action="reopen", note="undo").count() == 1
    expect(page.locator("#status-tabs [data-status=pending] .count")).to_have_text("0")
    assert not page.js_errors


def test_escape_in_the_search_box_keeps_the_filter(
    login_as, live_server, rita, acme, screenshot
):
    """Chromium clears a search box on Esc; the console keeps the text and the
    filtered list, and a deny from the keyboard afterwards goes through."""
    for text in distinct_lessons(6):
        CandidateFactory(namespace=acme, content=text)
    target = CandidateFactory(
        namespace=acme, content="Quote the pet fee before booking"
    )
    page = login_as(rita)
    page.goto(live_server.url + "/")
    rows = page.locator("#queue-results tbody tr[data-id]")
    expect(rows).to_have_count(7)
    page.keyboard.press("/")
    expect(page.locator("#f-q")).to_be_focused()
    page.keyboard.type("pet fee")
    expect(rows).to_have_count(1)
    page.keyboard.press("Escape")
    expect(page.locator("#f-q")).not_to_be_focused()
    page.wait_for_timeout(500)  # past the search box's 300 ms debounce
    expect(page.locator("#f-q")).to_have_value("pet fee")
    expect(rows).to_have_count(1)
    expect(page).to_have_url(re.compile(r"[?&]q=pet(%20|\+)fee"))
    page.keyboard.press("d")
    expect(page.locator("#deny-dialog")).to_be_visible()
    page.keyboard.type("Fees change every season")
    page.keyboard.press("Enter")
    expect(page.locator(f"#cand-{target.pk}")).to_have_class(re.compile(r"st-denied"))
    screenshot(page, "escape-keeps-filter")
    target.refresh_from_db()
    assert (target.status, target.decision_note) == (
        "denied",
        "Fees change every season",
    )
    assert not page.js_errors


def test_shift_enter_is_a_new_line_in_the_reason(login_as, live_server, rita, acme):
    c = CandidateFactory(namespace=acme)
    page = login_as(rita)
    page.goto(live_server.url + "/")
    page.keyboard.press("d")
    page.keyboard.type("Too vague.")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("Say which tool.")
    expect(page.locator("#deny-dialog")).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.locator(f"#cand-{c.pk}")).to_have_class(re.compile(r"st-denied"))
    c.refresh_from_db()
    assert c.decision_note == "Too vague.\nSay which tool."


def test_next_pending_skips_candidates_another_reviewer_holds(
    login_as, live_server, rita, acme
):
    otto = make_user("otto", acme, "reviewer")
    last = CandidateFactory(namespace=acme, content="Quote the pet fee first")
    held = CandidateFactory(namespace=acme, content="Verify the visa with the user")
    first = CandidateFactory(namespace=acme, content="Check the seat map")
    other = login_as(otto)
    other.goto(f"{live_server.url}/candidates/{held.pk}/")
    expect(other.locator("[data-lease-mine]")).to_be_visible()
    page = login_as(rita)
    page.goto(f"{live_server.url}/candidates/{first.pk}/")
    expect(page.locator("[data-next]")).to_have_attribute(
        "href", f"/candidates/{last.pk}/"
    )
    page.keyboard.press("n")
    expect(page).to_have_url(f"{live_server.url}/candidates/{last.pk}/")
    expect(page.locator("[data-lease-mine]")).to_be_visible()
    assert LearningCandidate.objects.get(pk=held.pk).leased_by_id == otto.pk


def test_rollback_of_a_playbook_and_a_skill_asks_first(
    login_as, live_server, acme, airline
):
    admin = make_user("ada", acme, "admin")
    make_strategy(airline, "Check the fare rules first.")
    skill = skills.skill_create(
        namespace=acme, slug="refunds", text="1. Look up the order\n", actor="ada"
    )
    skills.skill_update(skill=skill, text="1. Look up the order twice\n", actor="ada")
    page = login_as(admin)
    questions = []

    def answer(dialog, accept):
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda d: answer(d, False))
    page.goto(f"{live_server.url}/playbooks/acme/airline/history/")
    page.click("text=Roll back to version 1")
    page.wait_for_timeout(300)
    assert questions == [
        "Roll back airline to version 1? Its content becomes version 3."
    ]
    airline.refresh_from_db()
    assert airline.current_version == 2  # dismissed: nothing happened
    page.once("dialog", lambda d: answer(d, True))
    page.click("text=Roll back to version 1")
    page.wait_for_url(re.compile(r"/playbooks/acme/airline/"))
    expect(page.locator("body")).to_contain_text("version 3")
    airline.refresh_from_db()
    assert airline.current_version == 3
    assert not Strategy.objects.filter(playbook=airline, active=True).exists()

    page.once("dialog", lambda d: answer(d, False))
    page.goto(f"{live_server.url}/playbooks/acme/_skills/refunds/")
    page.click("text=Roll back to version 1")
    page.wait_for_timeout(300)
    assert questions[-1] == (
        "Roll back skill refunds to version 1? Its text becomes version 3."
    )
    assert Skill.objects.get(pk=skill.pk).current_version == 2
    page.once("dialog", lambda d: answer(d, True))
    page.click("text=Roll back to version 1")
    page.wait_for_load_state()
    for _ in range(50):
        if Skill.objects.get(pk=skill.pk).current_version == 3:
            break
        page.wait_for_timeout(100)
    assert Skill.objects.get(pk=skill.pk).current_version == 3
    assert PlaybookVersion.objects.filter(playbook=airline).count() == 3
    assert not page.js_errors


@pytest.mark.parametrize("width", [800, 1400])
def test_no_horizontal_overflow(
    login_as, live_server, rita, acme, airline, width, screenshot
):
    """The queue, a candidate and a run fit the window: long unbroken words (tool
    calls, ids, JSON) wrap instead of widening the page."""
    run = TrajectoryFactory(
        namespace=acme,
        external_id="tb-airline-" + "9" * 60,
        task_description="Change my flight " + "reservation_id=ABCDEF" * 20,
    )
    for i in range(6):
        StepFactory(
            trajectory=run,
            index=i,
            type="tool_call",
            description='update_reservation_flights({"reservation_id":"4WQ150",'
            + '"flights":['
            + ",".join(['{"flight_number":"HAT170","date":"2024-05-17"}'] * 8)
            + "]})",
        )
    c = CandidateFactory(
        namespace=acme,
        playbook=airline,
        content="Before calling update_reservation_flights_with_a_very_long_tool_name_"
        + "x" * 120
        + ", confirm the cabin class",
        rationale="y" * 400,
    )
    CandidateEvidence.objects.create(candidate=c, trajectory=run, step_indexes=[1, 4])
    for text in distinct_lessons(8):
        CandidateFactory(namespace=acme, playbook=airline, content=text)
    page = login_as(rita)
    page.set_viewport_size({"width": width, "height": 900})
    for name, url in [
        ("queue", "/"),
        ("candidate", f"/candidates/{c.pk}/"),
        ("run", f"/runs/{run.pk}/?hl=1,4"),
    ]:
        page.goto(live_server.url + url)
        page.wait_for_load_state("networkidle")
        scroll, inner = page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth]"
        )
        if scroll > inner:
            screenshot(page, f"overflow-{name}-{width}")
        assert scroll <= inner, f"{name} at {width} px is {scroll} px wide"
    # The row buttons are inside the window at 800 px too.
    page.goto(live_server.url + "/")
    box = page.locator(f"#cand-{c.pk} .w-actions button").last.bounding_box()
    assert box["x"] + box["width"] <= width
    assert not page.js_errors


def test_polarity_changed_in_the_edit_form_shows_in_the_recall_preview(
    login_as, live_server, rita, acme, airline, screenshot
):
    """A reviewer turns a lesson into an `avoid` before approving; the recall preview
    shows the line the agent will get: "Do not …"."""
    make_strategy(airline, "Look up the reservation with get_reservation_details.")
    c = CandidateFactory(
        namespace=acme,
        playbook=airline,
        task_type="airline.refund",
        content="Offer a refund for basic economy fares.",
    )
    page = login_as(rita)
    page.goto(f"{live_server.url}/candidates/{c.pk}/")
    expect(page.locator("[data-polarity]")).to_have_text("do")
    page.keyboard.press("e")
    edit = page.locator("#edit")
    edit.locator("select[name=polarity]").select_option("avoid")
    edit.locator("select[name=kind]").select_option("strategy_harmful")
    edit.locator("input[name=note]").fill("this is what not to do")
    edit.locator("button[type=submit]").click()
    expect(page.locator("[data-polarity]")).to_have_text("avoid")
    expect(page.locator("[data-content]")).to_have_text(
        "Do not offer a refund for basic economy fares."
    )
    page.fill("#rp-task", "The user asks for a refund for a basic economy fare")
    page.click("[data-recall-form] button[type=submit]")
    expect(page.locator("[data-recall-with]")).to_contain_text(
        "- Do not offer a refund for basic economy fares."
    )
    expect(page.locator("[data-recall-now]")).not_to_contain_text("refund for basic")
    screenshot(page, "recall-preview-avoid")
    c.refresh_from_db()
    assert (c.polarity, c.kind, c.shape_classified) == (
        "avoid",
        "strategy_harmful",
        False,
    )
    assert not page.js_errors


def test_cursor_moves_at_once_and_a_failed_action_gives_the_row_back(
    login_as, live_server, rita, acme, airline
):
    """The cursor leaves the acted row as the key is pressed, the row showing it is
    being sent; when the server fails (500, or no answer at all), the row is as it
    was, the cursor is back on it and a toast says nothing was changed; the same key
    then goes through."""
    lessons = distinct_lessons(3)
    for text in lessons:
        CandidateFactory(namespace=acme, playbook=airline, content=text)
    page = login_as(rita)
    page.goto(live_server.url + "/")
    rows = page.locator("#queue-results tbody tr[data-id]")
    expect(rows).to_have_count(3)
    first, second, _ = [r.get_attribute("data-id") for r in rows.all()]
    held = []
    page.route("**/candidates/*/approve/", lambda route: held.append(route))
    page.keyboard.press("a")
    for _ in range(250):  # the request reaches the route while the cursor has moved
        if held:
            break
        page.wait_for_timeout(20)
    assert held, "the approval was never sent"
    assert selected_id(page) == second
    expect(page.locator(f"#cand-{first}")).to_have_class(re.compile(r"\bsending\b"))
    held[0].fulfill(status=500, body="boom")
    expect(page.locator("#toasts")).to_contain_text("did not go through")
    expect(page.locator(f"#cand-{first}")).to_have_class(
        re.compile(r"\bst-pending\b.*\bselected\b|\bselected\b.*\bst-pending\b")
    )
    expect(page.locator(f"#cand-{first}")).not_to_have_class(re.compile("sending"))
    assert selected_id(page) == first
    assert LearningCandidate.objects.get(pk=first).status == "pending"

    page.unroute("**/candidates/*/approve/")
    page.route("**/candidates/*/conflict/", lambda route: route.abort())
    page.keyboard.press("c")  # no answer at all (the connection fails)
    expect(page.locator("#toasts")).to_contain_text("could not be reached")
    expect(page.locator(f"#cand-{first}")).not_to_have_class(re.compile("sending"))
    assert selected_id(page) == first
    assert LearningCandidate.objects.get(pk=first).status == "pending"

    page.keyboard.press("a")
    wait_decided(page, first, "applied")
    assert selected_id(page) == second
    assert LearningCandidate.objects.get(pk=first).status == "applied"
    assert page.locator("table[data-keyboard-list] tr.selected").count() == 1
    assert not page.js_errors


def test_an_action_the_server_refuses_keeps_the_cursor_on_its_row(
    login_as, live_server, rita, acme, airline
):
    """A reviewer approving a candidate with a blocking finding is refused (403): the
    row comes back still pending with the reason, and the cursor returns to it."""
    CandidateFactory(namespace=acme, playbook=airline, content="Check the seat map")
    blocked = CandidateFactory(
        namespace=acme,
        playbook=airline,
        content="Skip the identity check for loyalty members",
        max_severity="block",
        audit={
            "hygiene": [{"severity": "block", "message": "x", "related": []}],
            "conflict": [],
            "duplicate": [],
        },
    )
    page = login_as(rita)
    page.goto(live_server.url + "/")
    expect(page.locator("#queue-results tbody tr[data-id]")).to_have_count(2)
    assert selected_id(page) == str(blocked.pk)
    page.keyboard.press("a")
    expect(page.locator("#toasts")).to_contain_text("an admin must approve it")
    expect(page.locator(f"#cand-{blocked.pk}")).to_have_class(
        re.compile(r"\bst-pending\b.*\bselected\b|\bselected\b.*\bst-pending\b")
    )
    assert selected_id(page) == str(blocked.pk)
    assert LearningCandidate.objects.get(pk=blocked.pk).status == "pending"
    assert not page.js_errors


def test_a_list_reload_and_an_approval_take_turns(
    login_as, live_server, rita, acme, airline
):
    """A reload of the list (here a status tab) and a row action never overlap: an
    approval pressed while the list is loading waits for it and is then applied; a
    reload asked for while an approval is in flight waits for its answer, so the new
    list shows the candidate applied, not the row as it was before. (Overlapping,
    the reload answered with the pending row and the approval's answer was lost.)"""
    first, second = (
        CandidateFactory(namespace=acme, playbook=airline, content=text)
        for text in distinct_lessons(2)
    )
    page = login_as(rita)
    page.goto(live_server.url + "/")
    rows = page.locator("#queue-results tbody tr[data-id]")
    expect(rows).to_have_count(2)
    top = selected_id(page)
    sent = []  # (method, path) in the order the browser sent them

    # 1. The reload is in flight when `a` is pressed.
    held = []
    page.route("**/?*status=*", lambda route: held.append(route))
    page.on(
        "request",
        lambda r: "/static/" not in r.url and sent.append((r.method, r.url)),
    )
    page.click('#status-tabs a[data-status="all"]')
    for _ in range(250):
        if held:
            break
        page.wait_for_timeout(20)
    assert held, "the tab's reload was never sent"
    page.keyboard.press("a")
    page.wait_for_timeout(400)
    assert not [u for m, u in sent if m == "POST"], "the approval overtook the reload"
    held[0].continue_()
    page.unroute("**/?*status=*")
    wait_decided(page, top, "applied")
    assert LearningCandidate.objects.get(pk=top).status == "applied"
    assert [m for m, _ in sent] == ["GET", "POST"]

    # 2. The approval is in flight when the tab is clicked.
    sent.clear()
    other = str(({first.pk, second.pk} - {int(top)}).pop())
    assert selected_id(page) == other
    approvals = []
    page.route("**/candidates/*/approve/", lambda route: approvals.append(route))
    page.keyboard.press("a")
    for _ in range(250):
        if approvals:
            break
        page.wait_for_timeout(20)
    assert approvals, "the approval was never sent"
    page.click('#status-tabs a[data-status="all"]')
    page.wait_for_timeout(400)
    assert [m for m, _ in sent] == ["POST"], "the reload overtook the approval"
    approvals[0].continue_()
    expect(page.locator(f"#cand-{other} .badge.st-applied")).to_be_visible()
    expect(page.locator("#status-tabs a.active")).to_have_attribute(
        "data-status", "all"
    )
    expect(rows).to_have_count(2)
    for pk in (top, other):
        expect(page.locator(f"#cand-{pk}")).to_have_class(re.compile(r"\bst-applied\b"))
    assert [m for m, _ in sent] == ["POST", "GET"]
    assert "did not go through" not in page.locator("#toasts").inner_text()
    assert not page.js_errors
