"""Recall: lessons about the task (situation and subject; full-text on PostgreSQL,
term overlap as the fallback), confidence and counters, the token budget, every line
rendered from the lesson's structure, and the RecallLog."""

from datetime import timedelta

import pytest
from django.utils import timezone

from playbooks import recall
from playbooks.models import RecallLog, Strategy
from tests.factories import NamespaceFactory, make_playbook, make_strategy

pytestmark = pytest.mark.django_db


@pytest.fixture
def playbook():
    pb = make_playbook(NamespaceFactory(slug="acme"), "airline")
    make_strategy(
        pb,
        "Check the membership tier with get_user_details before quoting "
        "baggage allowance.",
        confidence=0.8,
    )
    make_strategy(
        pb,
        "Confirm the cabin class before searching for replacement flights.",
        confidence=0.8,
    )
    make_strategy(
        pb,
        "Ask for the reservation id before attempting any cancellation.",
        confidence=0.8,
    )
    make_strategy(
        pb,
        "Promising refunds for basic economy cancellations.",
        type="harmful",
        confidence=0.8,
    )
    pb.refresh_from_db()
    return pb


def test_most_relevant_strategy_comes_first(playbook):
    """The strategy sharing the task's terms ranks first; scores descend."""
    result = recall.playbook_recall(
        playbook=playbook, task="baggage allowance for a gold member"
    )
    assert result.items[0]["description"].startswith("Check the membership tier")
    scores = [i["score"] for i in result.items]
    assert scores == sorted(scores, reverse=True)
    assert result.version == playbook.current_version == 5
    assert "membership tier" in result.context


def test_cancellation_task_brings_the_harmful_pattern_phrased_as_avoid(playbook):
    """A harmful pattern described as an activity is stored as `avoid` and handed out
    as something to avoid, once."""
    result = recall.playbook_recall(
        playbook=playbook, task="cancel my basic economy booking and refund it"
    )
    harmful = next(i for i in result.items if i["type"] == "harmful")
    assert harmful["polarity"] == "avoid"
    assert (
        "- Avoid promising refunds for basic economy cancellations." in result.context
    )


def test_confidence_and_counters_break_relevance_ties():
    """Among equally relevant strategies the more confident, more helpful one wins; one
    judged harmful more often than helpful drops."""
    pb = make_playbook(NamespaceFactory(slug="acme"), "airline")
    low = make_strategy(pb, "Verify the passenger name on the ticket.", confidence=0.3)
    high = make_strategy(
        pb, "Verify the passenger name on the booking.", confidence=0.9
    )
    Strategy.objects.filter(pk=high.pk).update(helpful_count=10)
    Strategy.objects.filter(pk=low.pk).update(harmful_count=10)
    result = recall.playbook_recall(playbook=pb, task="verify passenger name")
    assert [i["id"] for i in result.items] == [high.pk, low.pk]


def test_never_exceeds_the_budget_and_reports_the_estimate(playbook):
    """The context text stays inside budget_tokens (~ characters / 4), lower-ranked
    items are left out first, and a budget too small for anything returns nothing."""
    for n in range(40):
        make_strategy(
            playbook,
            f"Weigh every bag before check-in and quote the baggage allowance "
            f"of tier {n}.",
        )
    full = recall.playbook_recall(
        playbook=playbook, task="baggage allowance", budget_tokens=5000
    )
    small = recall.playbook_recall(
        playbook=playbook, task="baggage allowance", budget_tokens=120
    )
    assert small.tokens <= 120
    assert small.tokens == recall.estimate_tokens(small.context)
    assert 0 < len(small.items) < len(full.items)
    assert full.tokens <= 5000
    assert [i["id"] for i in small.items] == [
        i["id"] for i in full.items[: len(small.items)]
    ]
    tiny = recall.playbook_recall(
        playbook=playbook, task="baggage allowance", budget_tokens=5
    )
    assert (tiny.context, tiny.items, tiny.tokens) == ("", [], 0)


def test_recall_is_logged_with_version_and_keys(playbook):
    """Each recall writes a RecallLog with the version and the strategy keys handed out,
    and stamps the strategies' last_recalled_at."""
    result = recall.playbook_recall(
        playbook=playbook,
        task="baggage allowance",
        requested_by="token:agent",
        session_id="s-1",
    )
    log = RecallLog.objects.get()
    assert log.version == result.version
    assert log.strategy_keys == [i["key"] for i in result.items]
    assert log.session_id == "s-1" and log.tokens == result.tokens
    first = Strategy.objects.get(pk=result.items[0]["id"])
    assert first.last_recalled_at is not None


def test_recall_restamps_a_lesson_at_most_once_per_stamp_interval(playbook):
    """A lesson recalled again within STAMP_EVERY keeps its stamp (no rewrite of the
    row per recall); one whose stamp is older gets the new time."""
    recent = timezone.now() - timedelta(minutes=5)
    old = timezone.now() - recall.STAMP_EVERY - timedelta(minutes=1)
    first = recall.playbook_recall(playbook=playbook, task="baggage allowance")
    key = first.items[0]["id"]
    Strategy.objects.filter(pk=key).update(last_recalled_at=recent)
    recall.playbook_recall(playbook=playbook, task="baggage allowance")
    assert Strategy.objects.get(pk=key).last_recalled_at == recent
    Strategy.objects.filter(pk=key).update(last_recalled_at=old)
    recall.playbook_recall(playbook=playbook, task="baggage allowance")
    assert Strategy.objects.get(pk=key).last_recalled_at > recent


def test_an_unrelated_task_gets_no_lessons(playbook):
    """Lessons about other situations never fill the context: a task that shares no
    subject with any lesson gets an empty context, not the playbook's best lessons."""
    result = recall.playbook_recall(playbook=playbook, task="zebra quantum")
    assert (result.items, result.context) == ([], "")


def test_a_lesson_for_another_situation_is_left_out():
    """Two lessons share words, but only one's situation is the task's: the lesson
    for changing flights is not handed to a cancellation, and vice versa."""
    pb = make_playbook(NamespaceFactory(slug="acme"), "airline")
    change = make_strategy(
        pb,
        "",
        polarity="do",
        when="the user asks to change the flights of a reservation",
        directive="check each new flight's availability with `search_direct_flight` "
        "before calling `update_reservation_flights`",
    )
    cancel = make_strategy(
        pb,
        "",
        polarity="avoid",
        when="the user asks to cancel a reservation",
        directive="call `cancel_reservation` before checking the fare rules",
    )
    changing = recall.playbook_recall(
        playbook=pb, task="I want to change the flights of reservation 4WQ150"
    )
    cancelling = recall.playbook_recall(
        playbook=pb, task="Please cancel my reservation H8Q05L"
    )
    assert [i["id"] for i in changing.items] == [change.pk]
    assert [i["id"] for i in cancelling.items] == [cancel.pk]
    assert (
        "- When the user asks to cancel a reservation, do not call "
        "`cancel_reservation` before checking the fare rules." in cancelling.context
    )


def test_retired_strategies_are_never_recalled(playbook):
    """Only active strategies are candidates."""
    Strategy.objects.filter(description__startswith="Check the membership").update(
        active=False
    )
    result = recall.playbook_recall(playbook=playbook, task="baggage allowance")
    assert "membership tier" not in result.context


def test_python_fallback_ranks_by_term_overlap(playbook):
    """The SQLite fallback finds and normalises the same best match."""
    found = recall._python_candidates(
        playbook, recall.task_terms("baggage allowances tier")
    )
    assert found[0].description.startswith("Check the membership tier")
    assert found[0].relevance == 1.0


@pytest.mark.parametrize(
    "kind, text, line",
    [
        # advice learned from a failure: still advice
        (
            "harmful",
            "Before calling book_reservation, compute the total with calculate.",
            "- Before calling book_reservation, compute the total with calculate.",
        ),
        # a described bad pattern: something to avoid
        ("harmful", "Refunding basic economy.", "- Avoid refunding basic economy."),
        # a negative directive: negated once, not twice
        ("harmful", "Never refund basic economy.", "- Do not refund basic economy."),
        ("helpful", "Do not promise a refund.", "- Do not promise a refund."),
        # a positive directive
        ("helpful", "Ask  first.", "- Ask first."),
    ],
)
def test_every_line_is_rendered_from_the_structure(kind, text, line):
    """The recalled line is rendered from polarity/when/directive, whichever phrasing
    the lesson came in, so its meaning cannot change on the way to the agent."""
    pb = make_playbook(NamespaceFactory(slug="acme"), "airline")
    strategy = make_strategy(pb, text, type=kind)
    assert recall.strategy_line(strategy) == line


def test_misspelled_short_task_finds_strategies_by_trigram(playbook):
    """A short task with a misspelling and no full-text match still finds the strategy
    by trigram similarity, ranked above the general fill."""
    result = recall.playbook_recall(playbook=playbook, task="reservaton")
    assert result.items[0]["description"].startswith("Ask for the reservation id")


def test_user_memories_join_the_context_within_a_quarter_of_the_budget(playbook):
    """With user_id, the user's memories and facts about entities the task names are
    added (most important first) inside a quarter of the budget; other users' are not."""
    from playbooks.memories import memory_create

    ns = playbook.namespace
    memory_create(
        namespace=ns,
        kind="preference",
        user_id="mia",
        importance=0.9,
        content="Prefers window seats.",
    )
    memory_create(
        namespace=ns,
        kind="preference",
        user_id="bob",
        importance=0.9,
        content="Prefers aisle seats.",
    )
    memory_create(
        namespace=ns,
        kind="durable_fact",
        entity="HAT001",
        importance=0.5,
        content="Departs from JFK terminal 4.",
    )
    memory_create(
        namespace=ns,
        kind="durable_fact",
        entity="HAT999",
        importance=0.5,
        content="Irrelevant flight.",
    )
    result = recall.playbook_recall(
        playbook=playbook,
        task="change flight HAT001 baggage",
        user_id="mia",
        budget_tokens=400,
    )
    assert [m["content"] for m in result.memories] == [
        "Prefers window seats.",
        "Departs from JFK terminal 4.",
    ]
    assert "- HAT001: Departs from JFK terminal 4." in result.context
    assert "aisle" not in result.context and "Irrelevant" not in result.context
    assert result.tokens <= 400 and result.items
    small = recall.playbook_recall(
        playbook=playbook, task="change flight HAT001", user_id="mia", budget_tokens=40
    )
    assert len(small.memories) <= 1 and small.tokens <= 40
    assert (
        "memories" not in recall.playbook_recall(playbook=playbook, task="x").as_dict()
    )


def test_recall_preview_with_a_candidate_applied_logs_nothing(playbook):
    """The preview is the context an agent would get now, and as if a candidate were
    applied (its line ranked with the others; a replacement drops the old one);
    nothing is logged and nothing is written."""
    from learning.services.candidates import candidate_create

    replaced = Strategy.objects.get(description__startswith="Ask for the reservation")
    candidate, _ = candidate_create(
        namespace=playbook.namespace,
        kind="strategy_helpful",
        playbook=playbook,
        polarity="do",
        when="the user asks to cancel a reservation",
        directive="read the fare rules with `get_reservation_details` first",
    )
    candidate.replaces_strategy_id = replaced.pk
    task = "Please cancel my reservation and tell me about the fare rules"
    now = recall.recall_preview(playbook=playbook, task=task)
    after = recall.recall_preview(playbook=playbook, task=task, candidate=candidate)
    assert "fare rules with `get_reservation_details` first" not in now.context
    assert (
        "- When the user asks to cancel a reservation, read the fare rules with "
        "`get_reservation_details` first." in after.context
    )
    assert replaced.pk in [i["id"] for i in now.items]
    assert replaced.pk not in [i["id"] for i in after.items]
    assert not RecallLog.objects.exists()
    assert playbook.strategies.filter(active=True).count() == 4


def test_a_lesson_is_recalled_for_tasks_like_the_ones_it_was_learned_from():
    """A strategy remembers the tasks it was learned in (ids and amounts aside): a new
    task of that kind recalls it though it shares none of the lesson's tool words, and
    a task of another kind does not."""
    pb = make_playbook(NamespaceFactory(slug="acme"), "airline")
    lesson = make_strategy(
        pb,
        "Before calling `book_reservation`, compute the total with `calculate`.",
    )
    Strategy.objects.filter(pk=lesson.pk).update(
        situations="You are mia_li_3668. You want to fly from New York to Seattle on "
        "May 20 in economy, and pay with your two certificates."
    )
    alike = recall.playbook_recall(
        playbook=pb,
        task="You are raj_brown_5782. You want to fly from New York to Seattle on "
        "June 2 in economy and pay with a certificate.",
    )
    other = recall.playbook_recall(
        playbook=pb,
        task="You are raj_brown_5782. You want to add two checked bags to your "
        "upcoming trip and change the passenger's name.",
    )
    assert [i["id"] for i in alike.items] == [lesson.pk]
    assert other.items == []
