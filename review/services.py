"""Review actions on learning candidates: one state machine for the console, the API
and the workers, and the only module that writes a candidate's status (pending →
approved → applied | apply_failed, denied, conflicted, superseded). Each action is
atomic and writes its audit-trail row in the same transaction; a candidate is locked
(SELECT … FOR UPDATE) so two reviewers acting at once get exactly one winner. Applying
is `playbooks.apply`'s job; deciding is this module's."""

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from learning.lessons import LessonInvalid, lesson_fields
from learning.models import (
    SHAPED_KINDS,
    TERMINAL_STATUSES,
    CandidateEvidence,
    CandidateStatus,
    LearningCandidate,
    Namespace,
    Severity,
)
from learning.queue import task_enqueue_on_commit
from learning.webhooks import candidate_event_emit
from playbooks.apply import ApplyFailed, candidate_apply
from playbooks.models import LearningMode
from review.trail import audit_event_record

logger = logging.getLogger(__name__)

AUTO_APPLY_ACTOR = "system:auto-apply"
SYSTEM_ACTOR = "system:audit"
AUDIT_TASK = "learning.audit_tasks.candidate_audit_task"


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
                applied = candidate_apply(candidate=candidate, actor=actor.label)
                _mark_applied(candidate, applied=applied, actor=actor)
        except ApplyFailed as exc:
            _mark_apply_failed(candidate, error=str(exc), actor=actor)
    return candidate


def _mark_applied(candidate, *, applied, actor: Actor) -> None:
    candidate.status = CandidateStatus.APPLIED
    candidate.applied_at = timezone.now()
    candidate.applied_version = applied.version
    candidate.apply_error = ""
    candidate.save(
        update_fields=[
            "status",
            "applied_at",
            "applied_version",
            "apply_error",
            "updated_at",
        ]
    )
    audit_event_record(
        namespace=candidate.namespace,
        actor=actor.label,
        action="apply",
        target_type="candidate",
        target_id=candidate.pk,
        candidate=candidate,
        from_status=CandidateStatus.APPROVED,
        to_status=CandidateStatus.APPLIED,
        data=applied.data,
    )
    candidate_event_emit(candidate=candidate, event="candidate.applied")  # webhooks


def _mark_apply_failed(candidate, *, error: str, actor: Actor) -> None:
    candidate.status = CandidateStatus.APPLY_FAILED
    candidate.apply_error = error
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
        note=error,
    )


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
        if "content" in after:
            _reshape(candidate, before, after)
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
            candidate_audit_requeue(candidate_id=candidate.pk)
    return candidate


def candidate_audit_requeue(*, candidate_id: int) -> None:
    """Audit the candidate again once this transaction commits (the audit is a stage
    before review: it is handed the work through the queue, not called)."""
    task_enqueue_on_commit(
        AUDIT_TASK,
        candidate_id,
        task_name=f"audit-candidate-{candidate_id}",
        group="audit",
    )


def _reshape(candidate, before: dict, after: dict) -> None:
    """New text for a lesson: its shape is read from it afresh (marked classified, so
    the reviewer sees what was read), and the content is its rendering."""
    if candidate.kind not in SHAPED_KINDS:
        return
    try:
        fields = lesson_fields(
            kind=candidate.kind, content=candidate.content, why=candidate.why
        )
    except LessonInvalid as exc:
        raise ReviewError(exc.message)
    for field, value in fields.items():
        setattr(candidate, field, value)
    after["content"] = candidate.content


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


# --- decisions the system takes: merging duplicates, background auto-apply ----------


def candidate_supersede(*, newer, survivor) -> None:
    """Mark `newer` superseded by `survivor` and move its evidence over, with an
    audit-trail row. Both rows must be locked by the caller (the audit does)."""
    added = 0
    evidence_rows = list(newer.evidence.all())
    for row in evidence_rows:
        _, created = CandidateEvidence.objects.get_or_create(
            candidate=survivor,
            trajectory_id=row.trajectory_id,
            defaults={
                "step_indexes": row.step_indexes,
                "reflection_id": row.reflection_id,
            },
        )
        added += int(created)
    if evidence_rows:
        survivor.evidence_count = survivor.evidence.count()
    else:  # a proposal without runs still counts as one more sighting
        survivor.evidence_count += max(newer.evidence_count, 1)
    survivor.save(update_fields=["evidence_count", "updated_at"])
    from_status = newer.status
    newer.status = CandidateStatus.SUPERSEDED
    newer.superseded_by = survivor
    newer.decided_by = SYSTEM_ACTOR
    newer.decided_at = timezone.now()
    newer.decision_note = f"Near-identical to candidate {survivor.pk}; merged into it."
    newer.save(
        update_fields=[
            "status",
            "superseded_by",
            "decided_by",
            "decided_at",
            "decision_note",
            "updated_at",
        ]
    )
    audit_event_record(
        namespace=newer.namespace,
        actor=SYSTEM_ACTOR,
        action="supersede",
        target_type="candidate",
        target_id=newer.pk,
        candidate=newer,
        from_status=from_status,
        to_status=CandidateStatus.SUPERSEDED,
        note=newer.decision_note,
        data={
            "survivor": survivor.pk,
            "evidence_added": added,
            "evidence_count": survivor.evidence_count,
        },
    )


def _has_findings_at_or_above_warn(candidate: LearningCandidate) -> bool:
    if candidate.max_severity in (Severity.WARN, Severity.BLOCK):
        return True
    for findings in (candidate.audit or {}).values():
        for finding in findings or []:
            if (finding or {}).get("severity") in (Severity.WARN, Severity.BLOCK):
                return True
    return False


def auto_apply_reason(*, candidate: LearningCandidate) -> str | None:
    """Why the candidate may NOT be auto-applied, or None when it may (the learning
    mode's rule: background mode, audited, no warn/block finding, confident enough)."""
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
