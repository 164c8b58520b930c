"""Learning modes: background mode applies clean, confident candidates at once."""

import logging

from learning.models import CandidateStatus, LearningCandidate, Severity
from playbooks.models import LearningMode

logger = logging.getLogger(__name__)

AUTO_APPLY_ACTOR = "system:auto-apply"


def _has_findings_at_or_above_warn(candidate: LearningCandidate) -> bool:
    if candidate.max_severity in (Severity.WARN, Severity.BLOCK):
        return True
    for findings in (candidate.audit or {}).values():
        for finding in findings or []:
            if (finding or {}).get("severity") in (Severity.WARN, Severity.BLOCK):
                return True
    return False


def auto_apply_reason(*, candidate: LearningCandidate) -> str | None:
    """Why the candidate may NOT be auto-applied, or None when it may."""
    playbook = candidate.playbook
    if playbook is None:
        return "no playbook"
    if playbook.mode != LearningMode.BACKGROUND:
        return f"playbook is in {playbook.mode} mode"
    if candidate.status != CandidateStatus.PENDING:
        return f"candidate is {candidate.status}"
    if candidate.audited_at is None:
        return "not audited yet"
    if _has_findings_at_or_above_warn(candidate):
        return "has a warn or block audit finding"
    if candidate.confidence < playbook.auto_apply_threshold:
        return (
            f"confidence {candidate.confidence:.2f} is below the threshold "
            f"{playbook.auto_apply_threshold:.2f}"
        )
    return None


def candidate_consider_auto_apply(*, candidate) -> bool:
    """Called after a candidate's audit. In background mode a candidate with no warn or
    block finding and confidence at or above the playbook's threshold is approved and
    applied by "system:auto-apply" and flagged auto_applied (it stays listed for review;
    playbooks.apply.candidate_revert undoes it). Returns True when it was applied."""
    from review.services import Actor, ReviewError, candidate_approve

    candidate = LearningCandidate.objects.select_related("playbook", "namespace").get(
        pk=candidate.pk
    )
    if auto_apply_reason(candidate=candidate) is not None:
        return False
    try:
        result = candidate_approve(
            namespace=candidate.namespace,
            candidate_id=candidate.pk,
            actor=Actor(AUTO_APPLY_ACTOR),
            note="auto-applied (background mode)",
        )
    except ReviewError as exc:
        logger.info("auto-apply of candidate %s skipped: %s", candidate.pk, exc)
        return False
    if result.status != CandidateStatus.APPLIED:
        return False
    LearningCandidate.objects.filter(pk=candidate.pk).update(auto_applied=True)
    return True
