"""The review queue: filters in the URL, counts per status, constant queries, htmx
partials, bulk decisions — and only the reviewer's namespaces."""

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from learning.models import LearningCandidate
from review.models import AuditEvent
from tests.factories import CandidateFactory, NamespaceFactory
from tests.review.conftest import HX, hx, make_user

pytestmark = pytest.mark.django_db


def test_anonymous_users_are_sent_to_login(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_users_without_a_reviewer_role_are_refused(acme):
    agent = make_user("agnes", acme, "agent")
    client = Client()
    client.force_login(agent)
    assert client.get("/").status_code == 403


def test_queue_lists_pending_candidates_of_my_namespaces_only(rclient, acme):
    mine = CandidateFactory(namespace=acme, content="Mine: check the fare rules")
    CandidateFactory(namespace=acme, content="Already denied", status="denied")
    CandidateFactory(namespace=NamespaceFactory(slug="elsewhere"), content="Not yours")
    response = rclient.get("/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Mine: check the fare rules" in html and f'id="cand-{mine.pk}"' in html
    assert "Already denied" not in html and "Not yours" not in html
    assert "<html" in html  # the full page
    counts = response.context["counts"]
    assert counts["pending"] == 1 and counts["denied"] == 1 and counts["all"] == 2


def test_htmx_request_gets_only_the_results_partial(rclient, acme):
    CandidateFactory(namespace=acme, content="Partial row")
    response = rclient.get("/?kind=strategy_helpful", **HX)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="queue-results">')
    assert "Partial row" in html and "<html" not in html


def test_history_restore_gets_the_full_page(rclient, acme):
    response = rclient.get(
        "/", HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true"
    )
    assert "<html" in response.content.decode()


@pytest.mark.parametrize(
    "query, expected",
    [
        ("kind=preference", {"pref"}),
        ("severity=block", {"blocked"}),
        ("severity=none", {"pref", "low", "helpful"}),
        ("min_confidence=0.5&max_confidence=0.95", {"pref", "blocked", "helpful"}),
        ("q=CABIN", {"helpful"}),
        ("namespace=acme&playbook=airline", {"helpful"}),
        ("agent=bot-7", {"pref"}),
        ("status=denied", {"denied"}),
        ("status=all", {"pref", "blocked", "low", "helpful", "denied"}),
        ("min_confidence=abc", set()),
    ],
)
def test_filters(rclient, acme, query, expected):
    """The console filters with CandidateFilter, as the API does; state is in the URL."""
    from tests.factories import make_playbook

    playbook = make_playbook(acme, slug="airline")
    CandidateFactory(
        namespace=acme, content="pref", kind="preference", confidence=0.6, agent="bot-7"
    )
    CandidateFactory(
        namespace=acme, content="blocked", max_severity="block", confidence=0.9
    )
    CandidateFactory(namespace=acme, content="low", confidence=0.2)
    CandidateFactory(
        namespace=acme,
        content="helpful: check the cabin",
        confidence=0.8,
        playbook=playbook,
    )
    CandidateFactory(namespace=acme, content="denied", status="denied")
    response = rclient.get(f"/?{query}")
    assert response.status_code == 200
    shown = {c.content.split(":")[0] for c in response.context["page"]}
    assert shown == expected


def test_query_count_is_constant_whatever_the_page_size(
    rclient, acme, django_assert_num_queries
):
    """2 rows or 30 rows: the same number of queries (no N+1 on namespace, playbook,
    lease holder)."""
    from tests.factories import make_playbook

    playbook = make_playbook(acme, slug="airline")
    holder = make_user("otto", acme)
    CandidateFactory.create_batch(
        2, namespace=acme, playbook=playbook, leased_by=holder
    )
    with CaptureQueriesContext(connection) as two:
        assert rclient.get("/").status_code == 200
    assert len(two) <= 8
    CandidateFactory.create_batch(
        28, namespace=acme, playbook=playbook, leased_by=holder
    )
    with django_assert_num_queries(len(two)):
        response = rclient.get("/")
    assert len(response.context["page"]) == 30


def test_pagination_keeps_the_filters(rclient, acme):
    CandidateFactory.create_batch(5, namespace=acme, kind="procedure")
    response = rclient.get("/?kind=procedure&per_page=2&page=2")
    html = response.content.decode()
    assert len(response.context["page"]) == 2
    assert "kind=procedure" in html and "page=3" in html and "3–4 of 5" in html


def test_lease_holder_shows_in_the_queue(rclient, acme):
    from datetime import timedelta

    from django.utils import timezone

    holder = make_user("otto", acme)
    CandidateFactory(
        namespace=acme,
        leased_by=holder,
        lease_until=timezone.now() + timedelta(minutes=5),
    )
    assert "🔒 otto" in rclient.get("/").content.decode()


def test_bulk_deny_as_plain_form_post(rclient, acme):
    cs = CandidateFactory.create_batch(3, namespace=acme)
    foreign = CandidateFactory(namespace=NamespaceFactory(slug="elsewhere"))
    response = rclient.post(
        "/candidates/bulk/",
        {
            "decision": "deny",
            "note": "too vague",
            "ids": [cs[0].pk, cs[1].pk, foreign.pk],
            "query": "status=pending",
        },
        follow=True,
    )
    assert response.redirect_chain[-1][0] == "/?status=pending"
    assert "Denied 2." in response.content.decode()
    statuses = dict(LearningCandidate.objects.values_list("pk", "status"))
    assert statuses == {
        cs[0].pk: "denied",
        cs[1].pk: "denied",
        cs[2].pk: "pending",
        foreign.pk: "pending",
    }


def test_bulk_deny_without_reason_is_refused(rclient, acme):
    c = CandidateFactory(namespace=acme)
    response = rclient.post(
        "/candidates/bulk/", {"decision": "deny", "ids": [c.pk]}, **HX
    )
    assert response.status_code == 400
    assert "A denial needs a reason." in response.content.decode()
    # The selection stays as it is: only the message is swapped in.
    assert (
        response["HX-Reswap"] == "none"
        and "queue-results" not in response.content.decode()
    )
    c.refresh_from_db()
    assert c.status == "pending"


def test_bulk_all_matching_acts_on_the_filter_not_the_page(rclient, acme, fake_apply):
    """ "All N matching this filter" approves every match (beyond the page), skips the
    blocked one and says so; non-matching candidates are untouched."""
    procedures = CandidateFactory.create_batch(4, namespace=acme, kind="procedure")
    blocked = CandidateFactory(namespace=acme, kind="procedure", max_severity="block")
    other = CandidateFactory(namespace=acme, kind="preference")
    response = rclient.post(
        "/candidates/bulk/",
        {
            "decision": "approve",
            "note": "",
            "all_matching": "true",
            "query": "kind=procedure&per_page=2",
        },
        **hx(),
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "Approved 4; skipped 1: blocking audit finding" in html
    assert html.lstrip().startswith('<div id="queue-results">')
    statuses = dict(LearningCandidate.objects.values_list("pk", "status"))
    assert [statuses[c.pk] for c in procedures] == ["applied"] * 4
    assert statuses[blocked.pk] == "pending" and statuses[other.pk] == "pending"


def test_bulk_needs_a_selection(rclient, acme):
    response = rclient.post("/candidates/bulk/", {"decision": "conflict"}, follow=True)
    assert "Select at least one candidate." in response.content.decode()
    assert not AuditEvent.objects.exists()


def test_bulk_requires_post_and_csrf(acme, reviewer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(reviewer)
    c = CandidateFactory(namespace=acme)
    assert client.get("/candidates/bulk/").status_code == 405
    assert (
        client.post(
            "/candidates/bulk/", {"decision": "conflict", "ids": [c.pk]}
        ).status_code
        == 403
    )


def test_status_counts_are_capped(rclient, acme, monkeypatch):
    """Over the cap the tabs say "N+" and pages are open-ended (no COUNT(*) over a
    large queue)."""
    from review import selectors

    monkeypatch.setattr(selectors, "COUNT_CAP", 3)
    CandidateFactory.create_batch(5, namespace=acme)
    response = rclient.get("/?per_page=2")
    html = response.content.decode()
    assert response.context["counts"]["pending"] == 3
    assert 'Pending <span class="count">3+</span>' in html
    assert "1–2 of 3+" in html and "page=2" in html
    last = rclient.get("/?per_page=2&page=3")
    assert len(last.context["page"]) == 1 and not last.context["page"].has_next()


def test_queue_of_a_namespace_i_do_not_review_is_empty(rclient, acme):
    CandidateFactory(namespace=NamespaceFactory(slug="elsewhere"))
    response = rclient.get("/?namespace=elsewhere")
    assert response.status_code == 200
    assert response.context["counts"]["all"] == 0 and len(response.context["page"]) == 0


def test_row_buttons_work_without_javascript(rclient, acme):
    """A row's ⚑ button posts the queue's form to the candidate's action URL; the
    reviewer lands back on the same filtered queue."""
    c = CandidateFactory(namespace=acme, kind="procedure")
    html = rclient.get("/?kind=procedure").content.decode()
    assert 'name="next" value="/?kind=procedure"' in html
    assert f'formaction="/candidates/{c.pk}/conflict/"' in html
    response = rclient.post(
        f"/candidates/{c.pk}/conflict/",
        {
            "next": "/?kind=procedure&status=pending",
            "note": "",
            "query": "kind=procedure",
        },
    )
    assert (
        response.status_code == 302
        and response["Location"] == "/?kind=procedure&status=pending"
    )
    c.refresh_from_db()
    assert c.status == "conflicted"


def test_next_must_stay_on_this_site(rclient, acme):
    c = CandidateFactory(namespace=acme)
    response = rclient.post(
        f"/candidates/{c.pk}/conflict/", {"next": "https://evil.example/"}
    )
    assert response["Location"] == f"/candidates/{c.pk}/"


@pytest.mark.parametrize(
    "query",
    ["", "kind=procedure", "show_hidden=true", "kind=procedure&show_hidden=true"],
)
def test_capped_and_grouped_counts_agree(rclient, acme, query):
    """Both ways of counting (capped index scans for the whole queue, one GROUP BY when
    filters narrow it) give the same numbers, below-floor rules included."""
    from review import selectors

    CandidateFactory.create_batch(2, namespace=acme, kind="procedure")
    CandidateFactory(namespace=acme, kind="procedure", below_floor=True)
    CandidateFactory(
        namespace=acme, kind="procedure", below_floor=True, status="denied"
    )
    CandidateFactory(namespace=acme, kind="procedure", status="applied")
    response = rclient.get(f"/?{query}")
    queue = response.context["queue"]
    capped, _ = selectors.status_counts(
        candidates=queue.without_status, show_hidden=queue.show_hidden
    )
    grouped, _ = selectors.status_counts(
        candidates=queue.without_status,
        show_hidden=queue.show_hidden,
        counting=selectors.Counting(exact=True),
    )
    assert capped == grouped
    hidden = "show_hidden" in query
    assert grouped["pending"] == (3 if hidden else 2)
    assert grouped["denied"] == 1 and grouped["applied"] == 1
    assert grouped["all"] == (5 if hidden else 3)
    assert response.context["counts"] == grouped
    # The pending tab's count is the number of rows the page lists.
    assert len(response.context["page"]) == grouped["pending"]


def test_filtered_counts_stop_at_their_own_cap_unless_the_index_lacks_the_filter(
    rclient, acme, monkeypatch
):
    """A filter the queue index carries (kind) is counted up to NARROWED_COUNT_CAP per
    status; a text filter (q), which it does not carry, is counted exactly."""
    from review import selectors

    monkeypatch.setattr(selectors, "NARROWED_COUNT_CAP", 2)
    CandidateFactory.create_batch(
        3, namespace=acme, kind="procedure", content="Check the fare rules"
    )
    CandidateFactory(namespace=acme, kind="procedure", status="denied")
    CandidateFactory.create_batch(4, namespace=acme, kind="preference")
    by_kind = rclient.get("/?kind=procedure&per_page=2")
    html = by_kind.content.decode()
    assert by_kind.context["counts"]["pending"] == 2
    assert 'Pending <span class="count">2+</span>' in html
    assert by_kind.context["counts"]["denied"] == 1
    assert "1–2 of 2+" in html and "page=2" in html
    second = rclient.get("/?kind=procedure&per_page=2&page=2")
    assert len(second.context["page"]) == 1 and not second.context["page"].has_next()
    by_text = rclient.get("/?q=fare+rules")
    assert by_text.context["counts"]["pending"] == 3
    assert 'Pending <span class="count">3</span>' in by_text.content.decode()
    # The whole queue keeps the larger cap.
    assert rclient.get("/").context["counts"]["pending"] == 7


@pytest.mark.parametrize("per_page", [1, 3, 50])
@pytest.mark.parametrize("query", ["", "kind=procedure", "status=all", "q=fare"])
def test_pages_list_every_row_once_in_queue_order(rclient, acme, query, per_page):
    """A page's rows are looked up by the ids of that page (one subquery): walking the
    pages gives the queue's order with nothing repeated or skipped, ties on the
    creation time included."""
    from django.utils import timezone

    now = timezone.now()
    for n in range(7):
        CandidateFactory(
            namespace=acme,
            kind="procedure" if n % 3 else "preference",
            status="denied" if n == 5 else "pending",
            content=f"Check the fare rules, case {n}",
        )
    LearningCandidate.objects.filter(namespace=acme).update(created_at=now)
    first = rclient.get(f"/?{query}&per_page={per_page}")
    expected = [c.pk for c in first.context["queue"].candidates]
    seen, number = [], 1
    while True:
        response = rclient.get(f"/?{query}&per_page={per_page}&page={number}")
        page = response.context["page"]
        seen += [c.pk for c in page]
        if not page.has_next():
            break
        number += 1
    assert seen == expected and len(set(seen)) == len(seen) > 0


@pytest.mark.parametrize("index", ["cand_queue_order", "cand_queue_kind"])
def test_every_filter_counted_with_capped_scans_reads_a_column_of_the_queue_index(
    index,
):
    """Filters outside UNINDEXED_PARAMS are counted by LIMITed scans of the queue
    indexes (`cand_queue_kind` for a kind filter, `cand_queue_order` otherwise): each
    must read a column both carry, or every entry a scan skips costs a table row (a
    new filter on another column belongs in UNINDEXED_PARAMS or in the indexes)."""
    from learning.candidate_filters import CandidateFilter
    from review import selectors

    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [index])
        (definition,) = cursor.fetchone()
    carried = {
        column.strip().split()[0]
        for part in definition.split("(")[1:]
        for column in part.split(")")[0].split(",")
    }
    for name, each in CandidateFilter.base_filters.items():
        if name in selectors.UNINDEXED_PARAMS or name == "show_hidden":
            continue
        fields = {f.name: f for f in LearningCandidate._meta.get_fields()}
        field = fields.get(each.field_name.split("__")[0])
        column = getattr(field, "column", None)  # None: a relation or a method
        assert column in carried, (name, column, carried)
    assert "below_floor" in carried  # what the queue hides below the floor


def test_a_candidate_with_its_longest_filter_values_fits_the_queue_index(acme):
    """The queue indexes carry agent, task type, user and source: at their longest,
    in four-byte characters, a candidate is still stored (B-tree entries are capped
    at 2,704 bytes on PostgreSQL)."""

    def wide(n: int, start: int) -> str:
        # Distinct characters of CJK Extension B (4 bytes each), so that PostgreSQL
        # cannot compress the entry below the limit.
        return "".join(chr(0x20000 + start + i * 7) for i in range(n))

    values = {
        "agent": wide(100, 0),
        "task_type": wide(200, 1000),
        "user_id": wide(200, 3000),
        "source": wide(16, 5000),
    }
    candidate = CandidateFactory(namespace=acme, **values)
    assert LearningCandidate.objects.filter(pk=candidate.pk, **values).exists()


def test_after_a_bulk_action_the_pager_keeps_the_filters(rclient, acme):
    CandidateFactory.create_batch(4, namespace=acme, kind="procedure")
    c = CandidateFactory(namespace=acme, kind="procedure")
    response = rclient.post(
        "/candidates/bulk/",
        {
            "decision": "conflict",
            "ids": [c.pk],
            "query": "kind=procedure&per_page=2",
        },
        **hx(),
    )
    html = response.content.decode()
    assert "Marked conflicted 1." in html
    assert "kind=procedure" in html and "page=2" in html and "1–2 of 4" in html
