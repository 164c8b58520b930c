"""Review actions on learning candidates: one state machine for the console, the API
and the workers. Each action is atomic and writes its audit-trail row in the same
transaction; a candidate is locked (SELECT … FOR UPDATE) so two reviewers acting at
once get exactly one winner."""
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from learning.models import (
    TERMINAL_STATUSES,
    CandidateStatus,
    LearningCandidate,
    Namespace,
    Severity,
)
from review.models import AuditEvent


class ReviewError(Exception):
    """An action that cannot be taken; the message is shown to the reviewer as is."""

    code = "invalid"


class AlreadyDecided(ReviewError):
    code = "already_decided"


class NeedsOverride(ReviewError):
    code = "needs_override"


class NoteRequired(ReviewError):
    code = "note_required"


@dataclass(frozen=True)
class Actor:
    """Who acts: a console user or an API token; `is_admin` allows block overrides."""

    label: str
    is_admin: bool = False


def audit_event_record(
    *,
    namespace: Namespace,
    actor: str,
    action: str,
    target_type: str,
    target_id: Any,
    candidate: LearningCandidate | None = None,
    from_status: str = "",
    to_status: str = "",
    note: str = "",
    data: dict | None = None,
) -> AuditEvent:
    return AuditEvent.objects.create(
        namespace=namespace,
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        candidate=candidate,
        from_status=from_status,
        to_status=to_status,
        note=note,
        data=data or {},
    )


def _locked(namespace: Namespace, candidate_id: int) -> LearningCandidate:
    return (
        LearningCandidate.objects.select_for_update()
        .select_related("namespace", "playbook", "skill")
        .get(namespace=namespace, pk=candidate_id)
    )


def _ensure_open(candidate: LearningCandidate, action: str) -> None:
    if candidate.status in TERMINAL_STATUSES:
        who = f" by {candidate.decided_by}" if candidate.decided_by else ""
        raise AlreadyDecided(
            f"Candidate {candidate.pk} was already {candidate.status}{who}; it cannot be "
            f"{action} again."
        )
    if candidate.status == CandidateStatus.APPROVED:
        raise AlreadyDecided(f"Candidate {candidate.pk} is already approved and being applied.")


def _decide(candidate, *, actor: Actor, to_status: str, note: str, action: str, data=None):
    from_status = candidate.status
    candidate.status = to_status
    candidate.decided_by = actor.label
    candidate.decision_note = note
    candidate.decided_at = timezone.now()
    candidate.leased_by = None
    candidate.lease_until = None
    candidate.save()
    audit_event_record(
        namespace=candidate.namespace,
        actor=actor.label,
        action=action,
        target_type="candidate",
        target_id=candidate.pk,
        candidate=candidate,
        from_status=from_status,
        to_status=to_status,
        note=note,
        data=data,
    )


def candidate_approve(
    *,
    namespace: Namespace,
    candidate_id: int,
    actor: Actor,
    note: str = "",
    override: bool = False,
    replace_strategy_id: int | None = None,
) -> LearningCandidate:
    """Approve and apply at once. `apply_failed` candidates may be approved again
    (a retry). A candidate with a `block` finding needs an admin's recorded override.
    `replace_strategy_id` approves it as a replacement that retires that strategy."""
    from playbooks.apply import ApplyFailed, candidate_apply

    with transaction.atomic():
        candidate = _locked(namespace, candidate_id)
        _ensure_open(candidate, "approved")
        if candidate.max_severity == Severity.BLOCK:
            if not override:
                raise NeedsOverride(
                    "This candidate has a blocking audit finding; an admin must approve it "
                    "with an explicit override."
                )
            if not actor.is_admin:
                raise NeedsOverride("Only an admin can override a blocking audit finding.")
            candidate.override_by = actor.label
        if replace_strategy_id is not None:
            candidate.replaces_strategy_id = replace_strategy_id
        data = {"override": True} if override and candidate.override_by else {}
        _decide(
            candidate, actor=actor, to_status=CandidateStatus.APPROVED, note=note,
            action="approve", data=data,
        )
        try:
            with transaction.atomic():
                candidate_apply(candidate=candidate, actor=actor.label)
        except ApplyFailed as exc:
            candidate.status = CandidateStatus.APPLY_FAILED
            candidate.apply_error = str(exc)
            candidate.save(update_fields=["status", "apply_error", "updated_at"])
            audit_event_record(
                namespace=candidate.namespace, actor=actor.label, action="apply_failed",
                target_type="candidate", target_id=candidate.pk, candidate=candidate,
                from_status=CandidateStatus.APPROVED, to_status=CandidateStatus.APPLY_FAILED,
                note=str(exc),
            )
    return candidate


def candidate_deny(
    *, namespace: Namespace, candidate_id: int, actor: Actor, note: str
) -> LearningCandidate:
    """Deny with a reason (shown to agents through the API)."""
    if not (note or "").strip():
        raise NoteRequired("A denial needs a reason.")
    with transaction.atomic():
        candidate = _locked(namespace, candidate_id)
        _ensure_open(candidate, "denied")
        _decide(candidate, actor=actor, to_status=CandidateStatus.DENIED, note=note.strip(),
                action="deny")
    return candidate


def candidate_mark_conflicted(
    *, namespace: Namespace, candidate_id: int, actor: Actor, note: str = ""
) -> LearningCandidate:
    with transaction.atomic():
        candidate = _locked(namespace, candidate_id)
        _ensure_open(candidate, "marked conflicted")
        _decide(candidate, actor=actor, to_status=CandidateStatus.CONFLICTED, note=note,
                action="conflict")
    return candidate
