"""Two reviewers acting on the same candidate at the same moment: the row lock in
review.services lets exactly one decision through; the other gets AlreadyDecided."""

import threading

import pytest
from django.db import connection

from review import services
from review.models import AuditEvent
from tests.factories import CandidateFactory, NamespaceFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_approve_and_deny_have_exactly_one_winner(fake_apply):
    ns = NamespaceFactory(slug="acme")
    c = CandidateFactory(namespace=ns)
    barrier = threading.Barrier(2)
    results = {}

    def act(name, fn, **kwargs):
        try:
            barrier.wait(timeout=10)
            fn(
                namespace=ns,
                candidate_id=c.pk,
                actor=services.Actor(label=name),
                **kwargs,
            )
            results[name] = "won"
        except services.AlreadyDecided as exc:
            results[name] = str(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=act, args=("rita", services.candidate_approve)),
        threading.Thread(
            target=act, args=("otto", services.candidate_deny), kwargs={"note": "no"}
        ),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(v == "won" for v in results.values()) == [False, True]
    loser = next(v for v in results.values() if v != "won")
    assert "already" in loser
    assert AuditEvent.objects.filter(action__in=["approve", "deny"]).count() == 1
    assert len(fake_apply) == (1 if results["rita"] == "won" else 0)
