"""Review actions on learning candidates: one state machine for the console, the API
and the workers. Each action is atomic and writes its audit-trail row in the same
transaction; a candidate is locked (SELECT … FOR UPDATE) so two reviewers acting at
once get exactly one winner."""

from dataclasses import dataclass
from datetime import timedelta
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
from learning.webhooks import candidate_event_emit
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
        LearningCandidate.objects.select_for_update(of=("self",))
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
        raise AlreadyDecided(
            f"Candidate {candidate.pk} is already approved and being applied."
        )


def _decide(
    candidate, *, actor: Actor, to_status: str, note: str, action: str, data=None
):
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
    candidate_event_emit(candidate=candidate, event="candidate.decided")  # webhooks


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
                raise NeedsOverride(
                    "Only an admin can override a blocking audit finding."
                )
            candidate.override_by = actor.label
        if replace_strategy_id is not None:
            candidate.replaces_strategy_id = replace_strategy_id
        data = {"override": True} if override and candidate.override_by else {}
        _decide(
            candidate,
            actor=actor,
            to_status=CandidateStatus.APPROVED,
            note=note,
            action="approve",
            data=data,
        )
        try:
            with transaction.atomic():
                candidate_apply(candidate=candidate, actor=actor.label)
        except ApplyFailed as exc:
            candidate.status = CandidateStatus.APPLY_FAILED
            candidate.apply_error = str(exc)
            candidate.save(update_fields=["status", "apply_error", "updated_at"])
            audit_event_record(
                namespace=candidate.namespace,
                actor=actor.label,
                action="apply_failed",
                target_type="candidate",
                target_id=candidate.pk,
                candidate=candidate,
                from_status=CandidateStatus.APPROVED,
                to_status=CandidateStatus.APPLY_FAILED,
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
        _decide(
            candidate,
            actor=actor,
            to_status=CandidateStatus.DENIED,
            note=note.strip(),
            action="deny",
        )
    return candidate


def candidate_mark_conflicted(
    *, namespace: Namespace, candidate_id: int, actor: Actor, note: str = ""
) -> LearningCandidate:
    with transaction.atomic():
        candidate = _locked(namespace, candidate_id)
        _ensure_open(candidate, "marked conflicted")
        _decide(
            candidate,
            actor=actor,
            to_status=CandidateStatus.CONFLICTED,
            note=note,
            action="conflict",
        )
    return candidate


# --- Console actions: soft lock, edit before approving, bulk decisions --------------

EDITABLE_STATUSES = frozenset({CandidateStatus.PENDING, CandidateStatus.APPLY_FAILED})
EDITABLE_FIELDS = (
    "content",
    "rationale",
    "playbook",
    "memory_scope",
    "user_id",
    "task_type",
)
BULK_LIMIT = 5000


def candidate_lease(
    *, namespace: Namespace, candidate_id: int, user, seconds: int | None = None
) -> bool:
    """Lease an open candidate to `user` unless another reviewer holds an unexpired
    lease. One conditional UPDATE, so two reviewers opening it at once get one holder.
    Returns whether `user` holds it now."""
    from django.conf import settings
    from django.db.models import Q

    now = timezone.now()
    seconds = settings.FLYWHEEL_LEASE_SECONDS if seconds is None else seconds
    until = now + timedelta(seconds=seconds)
    taken = (
        LearningCandidate.objects.filter(namespace=namespace, pk=candidate_id)
        .filter(status__in=[CandidateStatus.PENDING, CandidateStatus.APPLY_FAILED])
        .filter(Q(leased_by__isnull=True) | Q(leased_by=user) | Q(lease_until__lt=now))
        .update(leased_by=user, lease_until=until)
    )
    return until if taken else None


def candidate_release(*, namespace: Namespace, candidate_id: int, user) -> bool:
    """Give up `user`'s lease (someone else's lease is left alone)."""
    released = LearningCandidate.objects.filter(
        namespace=namespace, pk=candidate_id, leased_by=user
    ).update(leased_by=None, lease_until=None)
    return bool(released)


def _edit_value(candidate: LearningCandidate, field: str):
    if field == "playbook":
        return candidate.playbook.slug if candidate.playbook_id else None
    return getattr(candidate, field)


def candidate_edit(
    *,
    namespace: Namespace,
    candidate_id: int,
    actor: Actor,
    changes: dict,
    note: str = "",
) -> LearningCandidate:
    """Edit an open candidate before approving it: text, rationale, scope or target
    playbook (`changes["playbook"]` is a Playbook of the same namespace, or None).
    Recorded as an `edit` audit event with before/after; changed text or target is
    audited again, so an edit cannot slip past the hygiene or conflict checks."""
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise ReviewError(
            f"These fields cannot be edited: {', '.join(sorted(unknown))}."
        )
    playbook = changes.get("playbook")
    if playbook is not None and playbook.namespace_id != namespace.pk:
        raise ReviewError("The target playbook belongs to another namespace.")
    if "content" in changes and not (changes["content"] or "").strip():
        raise ReviewError("The content cannot be empty.")
    with transaction.atomic():
        candidate = _locked(namespace, candidate_id)
        if candidate.status not in EDITABLE_STATUSES:
            who = f" by {candidate.decided_by}" if candidate.decided_by else ""
            raise AlreadyDecided(
                f"Candidate {candidate.pk} was already {candidate.status}{who}; it can no "
                f"longer be edited."
            )
        before, after = {}, {}
        for field, value in changes.items():
            old = _edit_value(candidate, field)
            if field != "playbook":
                value = (
                    (value or "").strip()
                    if isinstance(value, str) or value is None
                    else value
                )
            setattr(candidate, field, value)
            new = _edit_value(candidate, field)
            if old != new:
                before[field], after[field] = old, new
        if not after:
            return candidate
        candidate.save()
        audit_event_record(
            namespace=candidate.namespace,
            actor=actor.label,
            action="edit",
            target_type="candidate",
            target_id=candidate.pk,
            candidate=candidate,
            from_status=candidate.status,
            to_status=candidate.status,
            note=note,
            data={"before": before, "after": after},
        )
        if {"content", "playbook", "memory_scope", "user_id"} & set(after):
            from learning.services.audit import candidate_audit

            candidate_audit(candidate=candidate)
    return candidate


@dataclass
class BulkOutcome:
    """What a bulk decision did: the candidates decided, and the skipped ones by reason."""

    decision: str
    decided: list = None
    apply_failed: list = None
    skipped: dict = None
    truncated: bool = False

    def __post_init__(self):
        self.decided = self.decided or []
        self.apply_failed = self.apply_failed or []
        self.skipped = self.skipped or {}

    def skip(self, reason: str, candidate_id: int) -> None:
        self.skipped.setdefault(reason, []).append(candidate_id)

    @property
    def skipped_count(self) -> int:
        return sum(len(ids) for ids in self.skipped.values())

    def summary(self) -> str:
        verb = {
            "approve": "Approved",
            "deny": "Denied",
            "conflict": "Marked conflicted",
        }
        parts = [f"{verb[self.decision]} {len(self.decided)}"]
        if self.apply_failed:
            parts.append(f"{len(self.apply_failed)} approved but failed to apply")
        for reason, ids in sorted(self.skipped.items()):
            parts.append(f"skipped {len(ids)}: {reason}")
        if self.truncated:
            parts.append(
                f"stopped after the first {BULK_LIMIT}; run it again for the rest"
            )
        return "; ".join(parts) + "."


def candidates_bulk_decide(
    *, candidate_ids, actor: Actor, decision: str, note: str = ""
) -> BulkOutcome:
    """Approve, deny or mark conflicted many candidates with one note. Each one goes
    through its single-candidate action (own transaction and row lock), so a candidate
    someone else decided meanwhile is skipped, never applied twice. Bulk approval never
    overrides: candidates with a `block` finding are skipped and counted.
    The caller passes only ids the actor may review."""
    actions = {
        "approve": candidate_approve,
        "deny": candidate_deny,
        "conflict": candidate_mark_conflicted,
    }
    if decision not in actions:
        raise ReviewError(f"Unknown decision {decision!r}.")
    if decision == "deny" and not (note or "").strip():
        raise NoteRequired("A denial needs a reason.")
    ids = list(dict.fromkeys(int(pk) for pk in candidate_ids))
    outcome = BulkOutcome(decision=decision, truncated=len(ids) > BULK_LIMIT)
    rows = (
        LearningCandidate.objects.filter(pk__in=ids[:BULK_LIMIT])
        .select_related("namespace")
        .only("pk", "status", "max_severity", "namespace")
        .order_by("created_at", "pk")
    )
    for row in rows:
        if decision == "approve" and row.max_severity == Severity.BLOCK:
            outcome.skip("blocking audit finding (needs an admin override)", row.pk)
            continue
        try:
            decided = actions[decision](
                namespace=row.namespace, candidate_id=row.pk, actor=actor, note=note
            )
        except AlreadyDecided:
            outcome.skip("already decided", row.pk)
        except NeedsOverride:
            outcome.skip("blocking audit finding (needs an admin override)", row.pk)
        else:
            if decided.status == CandidateStatus.APPLY_FAILED:
                outcome.apply_failed.append(row.pk)
            else:
                outcome.decided.append(row.pk)
    return outcome
