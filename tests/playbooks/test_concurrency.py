"""Two reviewers approving one candidate at the same moment apply it exactly once, and
two candidates applied at once to one playbook get distinct consecutive versions."""

import threading

import pytest
from django.db import connection

from playbooks.models import PlaybookVersion, Strategy
from review.models import AuditEvent
from review.services import Actor, ReviewError, candidate_approve
from tests.factories import CandidateFactory, NamespaceFactory, make_playbook

pytestmark = pytest.mark.django_db(transaction=True)


def _race(calls):
    barrier = threading.Barrier(len(calls))
    outcomes = [None] * len(calls)

    def run(index, call):
        try:
            barrier.wait(timeout=10)
            outcomes[index] = ("ok", call())
        except ReviewError as exc:
            outcomes[index] = ("refused", exc)
        except Exception as exc:  # a crash must fail the test, not hang it
            outcomes[index] = ("error", exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return outcomes


def test_concurrent_approvals_apply_once():
    """Of two simultaneous approvals, one applies and the other is refused as already
    decided: one strategy, one new version, one apply audit event."""
    ns = NamespaceFactory(slug="acme")
    playbook = make_playbook(ns, "airline")
    candidate = CandidateFactory(
        namespace=ns, playbook=playbook, content="Ask for the id."
    )

    outcomes = _race(
        [
            lambda: candidate_approve(
                namespace=ns, candidate_id=candidate.pk, actor=Actor("a")
            ),
            lambda: candidate_approve(
                namespace=ns, candidate_id=candidate.pk, actor=Actor("b")
            ),
        ]
    )

    kinds = sorted(o[0] for o in outcomes)
    assert kinds == ["ok", "refused"], outcomes
    assert Strategy.objects.filter(playbook=playbook).count() == 1
    assert PlaybookVersion.objects.filter(playbook=playbook).count() == 2
    assert AuditEvent.objects.filter(candidate=candidate, action="apply").count() == 1
    candidate.refresh_from_db()
    assert candidate.status == "applied" and candidate.applied_version == 2


def test_concurrent_applies_to_one_playbook_get_consecutive_versions():
    """Different candidates applied at once to one playbook serialise on the playbook
    row: versions 2 and 3, each snapshot holding what came before."""
    ns = NamespaceFactory(slug="acme")
    playbook = make_playbook(ns, "airline")
    first = CandidateFactory(namespace=ns, playbook=playbook, content="First lesson.")
    second = CandidateFactory(namespace=ns, playbook=playbook, content="Second lesson.")

    outcomes = _race(
        [
            lambda: candidate_approve(
                namespace=ns, candidate_id=first.pk, actor=Actor("a")
            ),
            lambda: candidate_approve(
                namespace=ns, candidate_id=second.pk, actor=Actor("b")
            ),
        ]
    )

    assert [o[0] for o in outcomes] == ["ok", "ok"], outcomes
    versions = list(
        PlaybookVersion.objects.filter(playbook=playbook).order_by("number")
    )
    assert [v.number for v in versions] == [1, 2, 3]
    assert len(versions[2].content) == 2
    playbook.refresh_from_db()
    assert playbook.current_version == 3
