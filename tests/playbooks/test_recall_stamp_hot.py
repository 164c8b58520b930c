"""The last_recalled_at stamp a recall writes is a heap-only update on PostgreSQL
(migration 0009's fillfactor): with full pages each stamped row would be rewritten on
another page with new entries in every index, the GIN indexes included."""

import pytest
from django.db import connection

from playbooks import recall
from playbooks.models import Strategy
from tests.factories import NamespaceFactory, make_playbook

pytestmark = pytest.mark.django_db


def _updates() -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_stat_get_xact_tuples_updated(%s::regclass),"
            " pg_stat_get_xact_tuples_hot_updated(%s::regclass)",
            ["playbooks_strategy", "playbooks_strategy"],
        )
        return cursor.fetchone()


def test_recall_stamps_strategies_without_moving_them():
    if connection.vendor != "postgresql":
        pytest.skip("heap-only updates are PostgreSQL's")
    playbook = make_playbook(NamespaceFactory(slug="acme"), "airline")
    # Enough rows, written as one set, to fill many pages to the table's fillfactor.
    Strategy.objects.bulk_create(
        Strategy(
            playbook=playbook,
            description=f"Check the baggage allowance of the membership tier {n} "
            "with get_user_details before quoting a fee for checked bags, "
            "and say which rule of the fare applies to the passenger's cabin.",
            type="helpful",
            when="the user asks about checked baggage fees",
            # the ones recalled (the most confident) lie a page or more apart, as a
            # recall's few picks out of a large playbook do
            confidence=0.9 if n % 20 == 0 else 0.5,
            position=n,
        )
        for n in range(400)
    )
    before = _updates()
    result = recall.playbook_recall(playbook=playbook, task="baggage allowance fee")
    updated, hot = (a - b for a, b in zip(_updates(), before))
    assert result.items and updated == len(result.items)
    assert hot == updated
