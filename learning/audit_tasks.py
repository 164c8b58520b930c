"""Django-Q2 task: audit one learning candidate, then give the learning mode its say
(background mode auto-applies clean, confident candidates) — thin callers of the
services, in the order the data flows."""

from learning.models import CandidateStatus, LearningCandidate
from learning.services.audit import candidate_audit
from review.services import candidate_consider_auto_apply


def candidate_audit_task(candidate_id: int) -> dict | None:
    candidate = LearningCandidate.objects.filter(pk=candidate_id).first()
    if candidate is None:  # deleted before the worker got to it
        return None
    report = candidate_audit(candidate=candidate)
    candidate.refresh_from_db(fields=["status"])
    if candidate.status == CandidateStatus.PENDING:
        candidate_consider_auto_apply(candidate=candidate)
    return {key: len(findings) for key, findings in report.items()}
