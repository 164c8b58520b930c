"""Reviewer console, key press to the next row: real Chromium (Playwright) against
gunicorn on loopback, a logged-in reviewer triaging a queue page of 50 pending
candidates from the keyboard — approve (`a`), mark conflicted (`c`) and deny with a
canned reason (`d`, `1`, Enter) — each approval applied to a playbook of 60 strategies
as a new version. For each of 50 actions it measures, in the page, the time from the
keydown of the deciding key (`a`, `c`, or Enter in the reason box) to the moment the
next row is highlighted (a MutationObserver on the rows' class). Prints
`console_key_to_next_row_ms_median` and `_p95`; the console moves the cursor as the key
is pressed and the server's answer decides, so it also prints
`console_key_to_answer_ms_median` (key press to the acted row swapped for the
server's, its decided status shown) and the server's share (the median time of the
same POST measured by the browser's Resource Timing). The next key is pressed only
once the answer is in: actions never overlap, each sample stands alone.

Static files (htmx, the console's JS and CSS) are served to the browser from disk by
Playwright, as a CDN or whitenoise would, so the figure is the application's."""

import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import NOUNS, ROOT, VERBS, WHENS, django_setup, report  # noqa: E402

ACTIONS = 50
PATTERN = ["a", "a", "d", "a", "c"]  # repeated: 30 approvals, 10 denials, 10 conflicts
CHROMIUM = os.environ.get("FLYWHEEL_CHROMIUM", "/usr/bin/chromium")

INSTRUMENT = """
(() => {
  const fw = window.__fw = {armed: false, t0: null, acted: null, samples: [],
                            t1: null, answered: []};
  document.addEventListener("keydown", (e) => {
    if (!fw.armed) return;
    fw.armed = false;
    fw.t0 = fw.t1 = performance.now();
    const sel = document.querySelector("table[data-keyboard-list] tr.selected");
    fw.acted = sel ? sel.id : null;
  }, true);
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      if (fw.t0 !== null && m.type === "attributes") {
        const el = m.target;
        if (el.tagName === "TR" && el.id !== fw.acted && el.classList.contains("selected")) {
          fw.samples.push(performance.now() - fw.t0);
          fw.t0 = null;
        }
      }
      if (fw.t1 !== null && m.type === "childList") {
        for (const n of m.addedNodes) {
          if (n.id === fw.acted && !n.classList.contains("st-pending")) {
            fw.answered.push(performance.now() - fw.t1);
            fw.t1 = null;
            break;
          }
        }
      }
    }
  }).observe(document, {subtree: true, childList: true, attributes: true,
                        attributeFilter: ["class"]});
})();
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sentence(rng: random.Random) -> str:
    return (
        f"{rng.choice(WHENS).strip().capitalize()}, {rng.choice(VERBS)} the "
        f"{rng.choice(NOUNS)} before you {rng.choice(VERBS)} the {rng.choice(NOUNS)} "
        f"{rng.randrange(10_000)}"
    )


def seed(rng: random.Random):
    from django.contrib.auth import get_user_model

    from learning.models import Membership, Namespace, Step, Trajectory
    from learning.services.candidates import EvidenceRef, candidate_create
    from playbooks.services import playbook_create, strategy_add
    from review.models import CannedReason

    namespace = Namespace.objects.create(slug="bench-console")
    user = get_user_model().objects.create_user("bench-reviewer", password="x")
    Membership.objects.create(user=user, namespace=namespace, role="reviewer")
    playbook = playbook_create(namespace=namespace, slug="airline", name="Airline")
    for _ in range(60):
        strategy_add(
            playbook=playbook, actor="seed", type="helpful", description=sentence(rng)
        )
    CannedReason.objects.create(
        namespace=namespace, text="Bound to one run: names its ids", position=0
    )
    runs = []
    for i in range(20):
        run = Trajectory.objects.create(
            namespace=namespace,
            external_id=f"bench-console-{i}",
            agent="bench",
            task_description=sentence(rng),
            task_type="airline.change",
            status="failure",
            success_score=0.0,
        )
        Step.objects.bulk_create(
            Step(trajectory=run, index=j, type="message", description=sentence(rng))
            for j in range(30)
        )
        runs.append(run)
    for i in range(ACTIONS + 5):
        candidate_create(
            namespace=namespace,
            kind="strategy_helpful",
            content=sentence(rng) + f" (case {i})",
            rationale="seen in a failing run",
            confidence=0.8,
            playbook=playbook,
            evidence=[EvidenceRef(run_id=runs[i % len(runs)].id, step_indexes=[2, 5])],
        )
    return user


def session_cookie(user) -> str:
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def static_router(page):
    from django.contrib.staticfiles import finders

    def handle(route):
        path = route.request.url.split("/static/", 1)[1].split("?", 1)[0]
        found = finders.find(path)
        if not found:
            return route.fulfill(status=404, body="")
        kind = "text/css" if path.endswith(".css") else "application/javascript"
        return route.fulfill(
            status=200, body=Path(found).read_bytes(), content_type=kind
        )

    page.route("**/static/**", handle)


def measured(page, before: int, timeout_s: float = 15.0) -> bool:
    """Wait for both in-page samples of this action (the next row highlighted, the
    server's answer swapped in), so actions never overlap. Polled from here: the
    page's CSP (script-src 'self') forbids the eval that `wait_for_function` needs,
    and the figures are taken in the page, so polling does not change them."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (
            page.evaluate(
                "Math.min(window.__fw.samples.length, window.__fw.answered.length)"
            )
            > before
        ):
            return True
        time.sleep(0.005)
    return False


def triage(base: str, cookie: str) -> dict:
    from django.conf import settings
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": base}]
        )
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        static_router(page)
        page.add_init_script(INSTRUMENT)
        page.goto(base + "/?per_page=60")
        page.wait_for_selector("table[data-keyboard-list] tr.selected")
        server_ms = []
        for i in range(ACTIONS):
            key = PATTERN[i % len(PATTERN)]
            before = page.evaluate("window.__fw.answered.length")
            if key == "d":
                page.keyboard.press("d")
                page.wait_for_selector("#deny-dialog[open]")
                page.keyboard.press("1")
                page.evaluate("window.__fw.armed = true")
                page.keyboard.press("Enter")
            else:
                page.evaluate("window.__fw.armed = true")
                page.keyboard.press(key)
            if not measured(page, before):
                toasts = page.locator("#toasts").inner_text()
                raise RuntimeError(f"action {i} ({key}): {toasts!r} {errors}")
            server_ms.append(
                page.evaluate(
                    """() => { const e = performance.getEntriesByType("resource")
                        .filter(r => r.initiatorType === "xmlhttprequest").pop();
                        return e ? e.responseEnd - e.requestStart : null; }"""
                )
            )
        samples = page.evaluate("window.__fw.samples")
        answered = page.evaluate("window.__fw.answered")
        browser.close()
    return {
        "samples": samples,
        "answered": answered,
        "server": [s for s in server_ms if s is not None],
    }


def main() -> dict:
    django_setup()
    from learning.models import LearningCandidate

    user = seed(random.Random(16))
    cookie = session_cookie(user)
    port = free_port()
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="config.settings", Q_SYNC="false")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2)
                break
            except Exception:
                time.sleep(0.2)
        measured = triage(base, cookie)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
    samples = sorted(measured["samples"])
    decided = LearningCandidate.objects.exclude(status="pending").count()
    assert len(samples) == ACTIONS, f"{len(samples)} of {ACTIONS} actions measured"
    assert decided == ACTIONS, f"{decided} candidates decided, expected {ACTIONS}"
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return {
        "console_key_to_next_row_ms_median": round(statistics.median(samples), 1),
        "console_key_to_next_row_ms_p95": round(p95, 1),
        "console_key_to_answer_ms_median": round(
            statistics.median(measured["answered"]), 1
        ),
        "console_action_server_ms_median": round(
            statistics.median(measured["server"]), 1
        ),
        "console_actions": len(samples),
    }


if __name__ == "__main__":
    report(main())
