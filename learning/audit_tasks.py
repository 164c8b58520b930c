"""Django-Q2 tasks: audit one learning candidate, then give the learning mode its say
(background mode auto-applies clean, confident candidates); and audit pending
candidates again when what they were compared with changed — a related candidate was
decided, their playbook got a new version, their skill or the agent's policy was
edited — so their findings stay true. Thin callers of the services, in the order the
data flows; the stages after the audit hand work back here by task name
(learning/queue.py)."""

from learning.models import CandidateStatus, LearningCandidate
from learning.services.audit import (
    candidate_audit,
    candidates_affected_by_version,
    candidates_audit,
    candidates_in_policy_scope,
    candidates_of_skill,
    candidates_related_pending,
)
from playbooks.models import LearningMode
from review.services import candidate_consider_auto_apply


def candidate_audit_task(candidate_id: int) -> dict | None:
    candidate = LearningCandidate.objects.filter(pk=candidate_id).first()
    if candidate is None:  # deleted before the worker got to it
        return None
    report = candidate_audit(candidate=candidate)
    _after_audit(candidate)
    return _counts(report)


def _after_audit(candidate) -> bool:
    """The learning mode's say once a candidate is audited; True when it applied it."""
    candidate.refresh_from_db(fields=["status"])
    if candidate.status == CandidateStatus.PENDING:
        return candidate_consider_auto_apply(candidate=candidate)
    return False


def _after_set_audit_wanted(candidate) -> bool:
    """Whether the learning mode has a say on a candidate of a set, read with its
    playbook: one whose playbook was not in background mode when the set was read is
    not applied without review (a switch to background mode since then only waits
    for the next audit; a switch away from it is read afresh by
    `candidate_consider_auto_apply`)."""
    playbook = candidate.playbook
    return playbook is not None and playbook.mode == LearningMode.BACKGROUND


def _counts(report: dict) -> dict:
    return {key: len(findings) for key, findings in report.items()}


def candidates_audit_task(candidate_ids: list[int]) -> dict:
    """The candidates made by one set of runs, audited in one task, in order (those
    deleted before the worker got to them are left out)."""
    reports = candidates_audit(
        candidate_ids=candidate_ids,
        after=_after_audit,
        after_wanted=_after_set_audit_wanted,
    )
    return {str(pk): _counts(report) for pk, report in reports.items()}


def _reaudit(ids: list[int]) -> list[int]:
    """Audit these candidates again, as one set (`candidates_audit_task`: their
    look-ups in one query per source, not three queries each)."""
    if ids:
        candidates_audit_task(ids)
    return ids


def candidates_related_reaudit_task(candidate_id: int) -> list[int]:
    """A candidate was decided (approved, denied, conflicted, merged)."""
    return _reaudit(candidates_related_pending(candidate_ids=[candidate_id]))


def candidates_merged_reaudit_task(candidate_ids: list[int]) -> list[int]:
    """Candidates a set's audit merged away (`candidates_related_reaudit_task` of
    each, in one task)."""
    return _reaudit(candidates_related_pending(candidate_ids=candidate_ids))


def playbook_version_reaudit_task(playbook_id: int, number: int) -> list[int]:
    """Version `number` of a playbook was made (apply, hand edit, rollback …)."""
    return _reaudit(
        candidates_affected_by_version(playbook_id=playbook_id, number=number)
    )


def skill_reaudit_task(skill_id: int) -> list[int]:
    """A skill's text changed: the pending patches of it are compared with its lines."""
    return _reaudit(candidates_of_skill(skill_id=skill_id))


def agent_policy_reaudit_task(namespace_id: int, playbook_id: int | None) -> list[int]:
    """The agent's policy of a namespace (or one playbook) was set or changed."""
    return _reaudit(
        candidates_in_policy_scope(namespace_id=namespace_id, playbook_id=playbook_id)
    )
