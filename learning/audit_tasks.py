"""Django-Q2 task: audit one learning candidate (a thin caller of the service)."""

from learning.models import LearningCandidate
from learning.services.audit import candidate_audit


def candidate_audit_task(candidate_id: int) -> dict | None:
    candidate = LearningCandidate.objects.filter(pk=candidate_id).first()
    if candidate is None:  # deleted before the worker got to it
        return None
    report = candidate_audit(candidate=candidate)
    return {key: len(findings) for key, findings in report.items()}
