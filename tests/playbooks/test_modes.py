"""Background mode: clean, confident, audited candidates are applied by
system:auto-apply and flagged; anything else waits for a reviewer."""

import pytest
from django.utils import timezone

from playbooks.apply import candidate_revert
from playbooks.models import Strategy
from review.services import candidate_consider_auto_apply
from tests.factories import CandidateFactory, NamespaceFactory, make_playbook

pytestmark = pytest.mark.django_db

CLEAN = {"conflict": [], "hygiene": [], "duplicate": []}


@pytest.fixture
def ns():
    return NamespaceFactory(slug="acme")


def audited(ns, playbook, **kwargs):
    defaults = {"audit": CLEAN, "audited_at": timezone.now(), "confidence": 0.9}
    return CandidateFactory(namespace=ns, playbook=playbook, **{**defaults, **kwargs})


def test_background_mode_applies_a_clean_confident_candidate(ns):
    """Applied at once by system:auto-apply, marked auto_applied, and revertable."""
    playbook = make_playbook(ns, "airline", mode="background")
    candidate = audited(ns, playbook)
    assert candidate_consider_auto_apply(candidate=candidate) is True
    candidate.refresh_from_db()
    assert candidate.status == "applied" and candidate.auto_applied
    assert candidate.decided_by == "system:auto-apply"
    assert Strategy.objects.get(source_candidate=candidate).active
    candidate_revert(candidate=candidate, actor="alice")
    assert not Strategy.objects.get(source_candidate=candidate).active


@pytest.mark.parametrize(
    "mode, kwargs",
    [
        ("propose", {}),
        ("agentic", {}),
        ("background", {"confidence": 0.5}),
        ("background", {"audited_at": None}),
        (
            "background",
            {
                "max_severity": "warn",
                "audit": {
                    **CLEAN,
                    "hygiene": [
                        {"severity": "warn", "message": "egress host", "related": []}
                    ],
                },
            },
        ),
        (
            "background",
            {
                "audit": {
                    **CLEAN,
                    "conflict": [
                        {"severity": "block", "message": "contradicts", "related": []}
                    ],
                }
            },
        ),
    ],
)
def test_other_candidates_wait_for_a_reviewer(ns, mode, kwargs):
    """Propose/agentic modes, low confidence, unaudited or warn/block findings: not
    applied, still pending."""
    playbook = make_playbook(ns, "airline", mode=mode)
    candidate = audited(ns, playbook, **kwargs)
    assert candidate_consider_auto_apply(candidate=candidate) is False
    candidate.refresh_from_db()
    assert candidate.status == "pending" and not candidate.auto_applied
    assert not Strategy.objects.filter(playbook=playbook).exists()


def test_audit_hook_auto_applies_in_background_mode(ns):
    """The audit task runs the audit, then the mode's auto-apply: a clean confident
    candidate for a background playbook ends applied without a reviewer."""
    from learning.audit_tasks import candidate_audit_task

    playbook = make_playbook(ns, "airline", mode="background")
    candidate = CandidateFactory(
        namespace=ns,
        playbook=playbook,
        confidence=0.95,
        content="Confirm the cabin class before searching flights.",
    )
    counts = candidate_audit_task(candidate.pk)
    report = candidate.__class__.objects.get(pk=candidate.pk).audit
    candidate.refresh_from_db()
    assert counts == {key: len(found) for key, found in report.items()}
    clean = not any(
        f["severity"] in ("warn", "block") for fs in report.values() for f in fs
    )
    assert clean, report
    assert candidate.status == "applied" and candidate.auto_applied
