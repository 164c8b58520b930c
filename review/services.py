"""Review actions on learning candidates: one state machine for the console, the API
and the workers, and the only module that writes a candidate's status (pending →
approved → applied | apply_failed, denied, conflicted, superseded). Each action is
atomic and writes its audit-trail row in the same transaction; a candidate is locked
(SELECT … FOR UPDATE) so two reviewers acting at once get exactly one winner. Applying
is `playbooks.apply`'s job; deciding is this module's."""

import copy
import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from learning.events import candidate_event_payload, webhook_events_emit
from learning.findings import DISMISS_ACTION, finding_find, report_max_severity
from learning.lessons import LessonInvalid, lesson_fields, lesson_parse
from learning.limits import (
    MAX_GUIDELINE_TEXT,
    MAX_REASON_TEXT,
)
from learning.models import (
    MEMORY_KINDS,
    SHAPED_KINDS,
    TERMINAL_STATUSES,
    CandidateEvidence,
    CandidateKind,
    CandidateStatus,
    LearningCandidate,
    Namespace,
    Polarity,
    Severity,
)
from learning.queue import task_enqueue_on_commit
from playbooks.apply import AlreadyReverted, ApplyFailed, candidate_apply
from playbooks.apply import candidate_revert as applied_candidate_revert
from playbooks.models import LearningMode
from playbooks.services import playbook_for_task_type
from review.models import AuditEvent, CannedReason, Guideline, ReviewTag
from review.trail import audit_event_record

logger = logging.getLogger(__name__)

AUTO_APPLY_ACTOR = "system:auto-apply"
SYSTEM_ACTOR = "system:audit"
AUDIT_TASK = "learning.audit_tasks.candidate_audit_task"
RELATED_REAUDIT_TASK = "learning.audit_tasks.candidates_related_reaudit_task"


class ReviewError(Exception):
    """An action that cannot be taken; the message is shown to the reviewer as is."""

    code = "invalid"


class AlreadyDecided(ReviewError):
    code = "already_decided"


class NeedsOverride(ReviewError):
    code = "needs_override"


class NoteRequired(ReviewError):
    code = "note_required"


class FindingNotFound(ReviewError):
    code = "not_found"


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
            f"Candidate {candidate.pk} was already {candidate.status}{who}, so it can "
            f"no longer be {action}."
        )
    if candidate.status == CandidateStatus.APPROVED:
        raise AlreadyDecided(
            f"Candidate {candidate.pk} is already approved and being applied."
        )


def _decide(
    candidate,
    *,
    actor: Actor,
    to_status: str,
    note: str,
    action: str,
    data=None,
    labels: "DecisionLabels | None" = None,
    save: bool = True,
) -> dict:
    """Record a decision: the candidate's fields, its audit row (with the canned
    reason and tags), the webhook event. `save=False` leaves writing the row and
    emitting the event to the caller (an approval writes the row once, with the
    outcome of applying, and its events with one read of the webhooks); the event's
    payload, as of the decision, is returned."""
    from_status = candidate.status
    data = dict(data or {})
    if labels is not None and labels.reason is not None:
        data["reason"] = labels.reason.pk
    candidate.status = to_status
    candidate.decided_by = actor.label
    candidate.decision_note = note
    candidate.decided_at = timezone.now()
    candidate.leased_by = None
    candidate.lease_until = None
    if save:
        candidate.save()
    event = audit_event_record(
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
    if labels is not None and labels.tags:
        event.tags.set(labels.tags)
    payload = candidate_event_payload(candidate)
    if save:
        webhook_events_emit(
            namespace=candidate.namespace, events=[("candidate.decided", payload)]
        )
    candidate_related_reaudit(candidate_id=candidate.pk)
    return payload


def candidate_related_reaudit(*, candidate_id: int) -> None:
    """Once this decision commits, audit again the pending candidates whose findings
    name this one (a conflict with a denied candidate is no longer true). Handed to
    the audit stage through the queue, by task name."""
    task_enqueue_on_commit(
        RELATED_REAUDIT_TASK,
        candidate_id,
        task_name=f"reaudit-related-{candidate_id}",
        group="audit",
    )


@dataclass(frozen=True)
class DecisionLabels:
    """A decision's canned reason and tags (the namespace's own; see
    `decision_labels`)."""

    reason: CannedReason | None = None
    tags: tuple = ()


def decision_labels(
    *, namespace: Namespace, reason_id: int | None = None, tags=()
) -> DecisionLabels:
    """The namespace's canned reason and tags by id/slug; anything else (another
    namespace's, a retired reason, an unknown slug) is a ReviewError naming it."""
    reason = None
    if reason_id:
        reason = (
            CannedReason.objects.filter(namespace=namespace, pk=reason_id, active=True)
            .prefetch_related("tags")
            .first()
        )
        if reason is None:
            raise ReviewError(f"No canned reason {reason_id} in this namespace.")
    wanted = list(dict.fromkeys(str(t) for t in tags if str(t).strip()))
    found = list(ReviewTag.objects.filter(namespace=namespace, slug__in=wanted))
    missing = sorted(set(wanted) - {t.slug for t in found})
    if missing:
        raise ReviewError(f"Unknown tag {missing[0]!r} in this namespace.")
    if reason is not None:
        found += [t for t in reason.tags.all() if t.slug not in set(wanted)]
    return DecisionLabels(reason=reason, tags=tuple(found))


def candidate_approve(
    *,
    namespace: Namespace,
    candidate_id: int,
    actor: Actor,
    note: str = "",
    override: bool = False,
    replace_strategy_id: int | None = None,
    labels: DecisionLabels | None = None,
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
        decided = _decide(
            candidate,
            actor=actor,
            to_status=CandidateStatus.APPROVED,
            note=note,
            action="approve",
            data=data,
            labels=labels,
            save=False,  # written once below, applied or apply_failed
        )
        # candidate_apply writes in its own savepoint: an ApplyFailed leaves nothing
        # of the apply behind, and the candidate is marked apply_failed instead.
        events = [("candidate.decided", decided)]
        try:
            applied = candidate_apply(candidate=candidate, actor=actor.label)
        except ApplyFailed as exc:
            _mark_apply_failed(candidate, error=str(exc), actor=actor)
        else:
            _mark_applied(candidate, applied=applied, actor=actor)
            events.append(("candidate.applied", candidate_event_payload(candidate)))
        webhook_events_emit(namespace=candidate.namespace, events=events)
    return candidate


def _mark_applied(candidate, *, applied, actor: Actor) -> None:
    candidate.status = CandidateStatus.APPLIED
    candidate.applied_at = timezone.now()
    candidate.applied_version = applied.version
    candidate.apply_error = ""
    candidate.save()  # the decision's fields too: one write for approve and apply
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


def _mark_apply_failed(candidate, *, error: str, actor: Actor) -> None:
    candidate.status = CandidateStatus.APPLY_FAILED
    candidate.apply_error = error
    candidate.save()  # the decision's fields too (see candidate_approve)
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
    *,
    namespace: Namespace,
    candidate_id: int,
    actor: Actor,
    note: str = "",
    labels: DecisionLabels | None = None,
) -> LearningCandidate:
    """Deny with a reason (shown to agents through the API): typed, or a canned
    reason of the namespace (its text is then the note unless one is typed)."""
    note = (note or "").strip()
    if not note and labels is not None and labels.reason is not None:
        note = labels.reason.text
    if not note:
        raise NoteRequired("A denial needs a reason.")
    with transaction.atomic():
        candidate = _locked(namespace, candidate_id)
        _ensure_open(candidate, "denied")
        _decide(
            candidate,
            actor=actor,
            to_status=CandidateStatus.DENIED,
            note=note,
            action="deny",
            labels=labels,
        )
    return candidate


def candidate_mark_conflicted(
    *,
    namespace: Namespace,
    candidate_id: int,
    actor: Actor,
    note: str = "",
    labels: DecisionLabels | None = None,
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
            labels=labels,
        )
    return candidate


# --- Console actions: soft lock, edit before approving, bulk decisions --------------

EDITABLE_STATUSES = frozenset({CandidateStatus.PENDING, CandidateStatus.APPLY_FAILED})
SHAPE_FIELDS = ("polarity", "when", "directive", "why")
EDITABLE_FIELDS = (
    "kind",
    "content",
    *SHAPE_FIELDS,
    "rationale",
    "playbook",
    "memory_scope",
    "user_id",
    "task_type",
)
# A skill patch is a diff against one skill's text: it cannot become another kind.
EDITABLE_KINDS = tuple(
    k for k in CandidateKind.values if k != CandidateKind.PATCH_SKILL
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


def _edit_check(*, namespace: Namespace, changes: dict) -> None:
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
    if "kind" in changes and changes["kind"] not in EDITABLE_KINDS:
        raise ReviewError(f"A candidate cannot become a {changes['kind']}.")
    if "polarity" in changes and changes["polarity"] not in Polarity.values:
        raise ReviewError("The polarity is either 'do' or 'avoid'.")


def _clean_text(value):
    return (value or "").strip() if isinstance(value, str) or value is None else value


def _reshape(
    candidate: LearningCandidate, changes: dict, *, kind_changed: bool = False
) -> None:
    """The lesson after an edit, by the one rule of `learning.lessons.lesson_fields`:
    new free text is read afresh (shape fields the reviewer also changed override what
    was read); changed shape fields keep the others and the text is rendered from
    them. A kind that is not a directive (preference, durable fact) keeps its text as
    written and no shape."""
    new_text = "content" in changes and changes["content"] != candidate.content
    stated = {
        f: changes[f]
        for f in SHAPE_FIELDS
        if f in changes and changes[f] != getattr(candidate, f)
    }
    if candidate.kind not in SHAPED_KINDS:
        if new_text:
            candidate.content = changes["content"]
        for field in SHAPE_FIELDS:
            setattr(candidate, field, "")
        candidate.shape_classified = False
        return
    if new_text or (not candidate.directive and (stated or kind_changed)):
        # Read from the text; what the reviewer set explicitly wins, and the parts
        # they left as the form showed them are the ones read (a stated directive
        # alone would otherwise lose the situation, or flip the polarity read).
        text = changes["content"] if new_text else candidate.content
        shape = {}
        if stated:
            read = lesson_parse(text, kind=candidate.kind).shape
            shape = {
                "polarity": read.polarity,
                "when": read.when,
                "directive": read.directive,
            }
        shape.update(stated, content=text)
        shape.setdefault("why", candidate.why)
    elif stated:
        shape = {f: stated.get(f, getattr(candidate, f)) for f in SHAPE_FIELDS}
        shape["content"] = candidate.content
    else:
        return
    try:
        fields = lesson_fields(
            kind=candidate.kind,
            **shape,
        )
    except LessonInvalid as exc:
        raise ReviewError(f"{exc.field}: {exc.message}") from exc
    if not ({"polarity", "when", "directive"} & set(stated)) and not new_text:
        fields["shape_classified"] = candidate.shape_classified  # only `why` changed
    for field, value in fields.items():
        setattr(candidate, field, value)


def _retarget(candidate: LearningCandidate) -> None:
    """After a change of kind: a memory needs a scope, a playbook entry a playbook."""
    if candidate.kind in MEMORY_KINDS:
        candidate.memory_scope = candidate.memory_scope or (
            "user" if candidate.user_id else "namespace"
        )
    else:
        candidate.memory_scope = ""
        if candidate.playbook_id is None:
            candidate.playbook = playbook_for_task_type(
                namespace=candidate.namespace, task_type=candidate.task_type
            )


def candidate_edit(
    *,
    namespace: Namespace,
    candidate_id: int,
    actor: Actor,
    changes: dict,
    note: str = "",
) -> LearningCandidate:
    """Edit an open candidate before approving it: its kind, its lesson (free text, or
    polarity / situation / directive / why — the text is then rendered from them),
    rationale, scope or target playbook (`changes["playbook"]` is a Playbook of the
    same namespace, or None). Recorded as an `edit` audit event with before/after;
    a changed lesson, kind or target is audited again, so an edit cannot slip past the
    hygiene or conflict checks."""
    _edit_check(namespace=namespace, changes=changes)
    changes = {
        f: (v if f == "playbook" else _clean_text(v)) for f, v in changes.items()
    }
    with transaction.atomic():
        candidate = _locked(namespace, candidate_id)
        if candidate.status not in EDITABLE_STATUSES:
            who = f" by {candidate.decided_by}" if candidate.decided_by else ""
            raise AlreadyDecided(
                f"Candidate {candidate.pk} was already {candidate.status}{who}; it can no "
                f"longer be edited."
            )
        if candidate.kind == CandidateKind.PATCH_SKILL and "kind" in changes:
            if changes["kind"] != candidate.kind:
                raise ReviewError("A skill patch cannot become another kind.")
        watched = (*EDITABLE_FIELDS, "shape_classified")
        before = {f: _edit_value(candidate, f) for f in watched}
        for field in ("kind", "rationale", "playbook", "memory_scope", "user_id"):
            if field in changes:
                setattr(candidate, field, changes[field])
        if "task_type" in changes:
            candidate.task_type = changes["task_type"]
        if candidate.kind != before["kind"]:
            _retarget(candidate)
        _reshape(candidate, changes, kind_changed=candidate.kind != before["kind"])
        after = {f: _edit_value(candidate, f) for f in watched}
        changed = [f for f in watched if before[f] != after[f]]
        if not changed:
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
            data={
                "before": {f: before[f] for f in changed},
                "after": {f: after[f] for f in changed},
            },
        )
        if REAUDIT_FIELDS & set(changed):
            candidate_audit_requeue(candidate_id=candidate.pk)
    return candidate


REAUDIT_FIELDS = frozenset(
    {"kind", "content", "polarity", "playbook", "memory_scope", "user_id"}
)


# --- reopening decisions, and undoing the last one ----------------------------------

# Superseded: merged into a near-identical candidate (by the audit or a reviewer's
# group decision); reopening takes it back out.
REOPENABLE_STATUSES = frozenset(
    {
        CandidateStatus.APPLIED,
        CandidateStatus.DENIED,
        CandidateStatus.CONFLICTED,
        CandidateStatus.SUPERSEDED,
    }
)
UNDO_SECONDS = 30  # the console offers undo for 10 s; the server allows a little more


def candidate_reopen(
    *, namespace: Namespace, candidate_id: int, actor: Actor, note: str = ""
) -> LearningCandidate:
    """Put a decided candidate back in the queue. An applied one is first reverted
    through the versioned path (`playbooks.apply.candidate_revert`: a new playbook
    version that undoes what its version recorded; its memory retired; its skill
    version rolled back); a superseded one is taken back out of the candidate it was
    merged into (`_unmerge`) — in the same transaction, so a revert that cannot be made
    leaves the decision as it was. The earlier decision stays in the audit trail (the
    dashboard's agreement figure reads it)."""
    with transaction.atomic():
        candidate = _locked(namespace, candidate_id)
        if candidate.status not in REOPENABLE_STATUSES:
            raise ReviewError(
                f"Candidate {candidate.pk} is {candidate.status}; only applied, denied, "
                f"conflicted or superseded candidates can be reopened."
            )
        reverted = {}
        if candidate.status == CandidateStatus.APPLIED:
            try:
                reverted = applied_candidate_revert(
                    candidate=candidate,
                    actor=actor.label,
                    note=note or f"reopened candidate {candidate.pk}",
                )
            except AlreadyReverted:
                reverted = {"already_reverted": True}
            except ApplyFailed as exc:
                raise ReviewError(f"Cannot reopen candidate {candidate.pk}: {exc}")
            candidate = _locked(namespace, candidate_id)
        elif candidate.status == CandidateStatus.SUPERSEDED:
            reverted = _unmerge(candidate)
        from_status = candidate.status
        previous = {
            "decided_by": candidate.decided_by,
            "decision_note": candidate.decision_note,
            "applied_version": candidate.applied_version,
        }
        candidate.status = CandidateStatus.PENDING
        for field in ("decided_by", "decision_note", "override_by", "apply_error"):
            setattr(candidate, field, "")
        candidate.decided_at = candidate.applied_at = candidate.applied_version = None
        candidate.replaces_strategy = None
        candidate.superseded_by = None
        candidate.auto_applied = False
        candidate.save()
        audit_event_record(
            namespace=candidate.namespace,
            actor=actor.label,
            action="reopen",
            target_type="candidate",
            target_id=candidate.pk,
            candidate=candidate,
            from_status=from_status,
            to_status=CandidateStatus.PENDING,
            note=note,
            data={"previous": previous, "revert": reverted},
        )
    return candidate


@dataclass
class UndoOutcome:
    reopened: list = None
    skipped: dict = None

    def __post_init__(self):
        self.reopened = self.reopened or []
        self.skipped = self.skipped or {}

    def summary(self) -> str:
        parts = [f"Undone: {len(self.reopened)} back in the queue"]
        for reason, ids in sorted(self.skipped.items()):
            parts.append(f"skipped {len(ids)}: {reason}")
        return "; ".join(parts) + "."


def candidates_undo(
    *, candidate_ids, actor: Actor, seconds: int = UNDO_SECONDS, now=None
) -> UndoOutcome:
    """Undo `actor`'s last decision on these candidates (one, or a bulk decision):
    each one decided by `actor` in the last `seconds` is reopened (an applied one
    reverted); others are left alone and counted. Later than that, reopen it."""
    now = now or timezone.now()
    outcome = UndoOutcome()
    ids = list(dict.fromkeys(int(pk) for pk in candidate_ids))[:BULK_LIMIT]
    rows = LearningCandidate.objects.filter(pk__in=ids).select_related("namespace")
    for row in rows.only("pk", "status", "decided_by", "decided_at", "namespace"):
        recent = row.decided_at is not None and (now - row.decided_at).total_seconds()
        if row.status not in REOPENABLE_STATUSES:
            outcome.skipped.setdefault(f"is {row.status}", []).append(row.pk)
        elif row.decided_by != actor.label:
            outcome.skipped.setdefault("decided by someone else", []).append(row.pk)
        elif recent is False or recent > seconds:
            outcome.skipped.setdefault("too late to undo: reopen it", []).append(row.pk)
        else:
            try:
                candidate_reopen(
                    namespace=row.namespace,
                    candidate_id=row.pk,
                    actor=actor,
                    note="undo",
                )
            except ReviewError as exc:
                outcome.skipped.setdefault(str(exc), []).append(row.pk)
            else:
                outcome.reopened.append(row.pk)
    return outcome


def candidate_audit_requeue(*, candidate_id: int) -> None:
    """Audit the candidate again once this transaction commits (the audit is a stage
    before review: it is handed the work through the queue, not called)."""
    task_enqueue_on_commit(
        AUDIT_TASK,
        candidate_id,
        task_name=f"audit-candidate-{candidate_id}",
        group="audit",
    )


def candidate_finding_dismiss(
    *,
    namespace: Namespace,
    candidate_id: int,
    finding_id: str,
    actor: Actor,
    reason: str,
) -> LearningCandidate:
    """A reviewer says an audit finding is wrong, with a reason: recorded in the audit
    trail (so it survives re-audits while the finding is unchanged) and on the
    finding. A dismissed info or warn no longer counts — bulk approval and
    background auto-apply then treat the candidate as clean of it; a dismissed block
    still stands until an admin approves with an override."""
    reason = (reason or "").strip()
    if not reason:
        raise NoteRequired("Dismissing a finding needs a reason.")
    with transaction.atomic():
        candidate = _locked(namespace, candidate_id)
        if candidate.status not in EDITABLE_STATUSES:
            raise AlreadyDecided(
                f"Candidate {candidate.pk} was already {candidate.status}; its findings "
                "can no longer be dismissed."
            )
        report = copy.deepcopy(candidate.audit or {})
        audit, finding = finding_find(report, finding_id)
        if finding is None:
            raise FindingNotFound(
                f"Candidate {candidate.pk} has no finding {finding_id!r} (the audit may "
                "have changed: reload it)."
            )
        if finding.get("dismissed"):
            return candidate
        finding["dismissed"] = {
            "by": actor.label,
            "at": timezone.now().isoformat(),
            "reason": reason,
        }
        candidate.audit = report
        candidate.max_severity = report_max_severity(report)
        candidate.save(update_fields=["audit", "max_severity", "updated_at"])
        audit_event_record(
            namespace=candidate.namespace,
            actor=actor.label,
            action=DISMISS_ACTION,
            target_type="candidate",
            target_id=candidate.pk,
            candidate=candidate,
            from_status=candidate.status,
            to_status=candidate.status,
            note=reason,
            data={
                "finding_id": finding_id,
                "audit": audit,
                "severity": finding.get("severity", ""),
                "message": finding.get("message", ""),
            },
        )
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
    *,
    candidate_ids,
    actor: Actor,
    decision: str,
    note: str = "",
    labels_for=None,
) -> BulkOutcome:
    """Approve, deny or mark conflicted many candidates with one note. Each one goes
    through its single-candidate action (own transaction and row lock), so a candidate
    someone else decided meanwhile is skipped, never applied twice. Bulk approval never
    overrides: candidates with a `block` finding are skipped and counted, and so are
    candidates with a `warn` finding nobody dismissed (a conflict or a hygiene warning
    is read one by one, or dismissed with a reason).
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
        if decision == "approve" and row.max_severity == Severity.WARN:
            outcome.skip("open audit warning (dismiss it or decide one by one)", row.pk)
            continue
        labels = labels_for(row.namespace) if labels_for is not None else None
        try:
            decided = actions[decision](
                namespace=row.namespace,
                candidate_id=row.pk,
                actor=actor,
                note=note,
                labels=labels,
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


def candidates_group_decide(
    *,
    namespace: Namespace,
    leader_id: int,
    member_ids,
    actor: Actor,
    decision: str,
    note: str = "",
    override: bool = False,
    labels: DecisionLabels | None = None,
    replace_strategy_id: int | None = None,
) -> tuple[LearningCandidate, list[int]]:
    """Decide a group of near-identical pending lessons once. Approving applies the
    leader after merging the others into it (they become `superseded`, their evidence
    counted on the leader), so the playbook gets one strategy with all the evidence;
    denying or marking conflicted decides each of them with the same note. One
    transaction: a refused leader decides nothing. Members someone decided meanwhile
    are left alone. Returns (the leader, the ids of the members decided)."""
    if decision not in ("approve", "deny", "conflict"):
        raise ReviewError(f"Unknown decision {decision!r}.")
    ids = [int(pk) for pk in dict.fromkeys(member_ids) if int(pk) != int(leader_id)]
    if not ids:  # one candidate: its own action (one lock, one transaction)
        single = {
            "approve": candidate_approve,
            "deny": candidate_deny,
            "conflict": candidate_mark_conflicted,
        }[decision]
        extra = (
            {"override": override, "replace_strategy_id": replace_strategy_id}
            if decision == "approve"
            else {}
        )
        leader = single(
            namespace=namespace,
            candidate_id=leader_id,
            actor=actor,
            note=note,
            labels=labels,
            **extra,
        )
        return leader, []
    from review.selectors import lessons_alike

    with transaction.atomic():
        leader = _locked(namespace, leader_id)
        members = [
            member
            for member in LearningCandidate.objects.select_for_update(of=("self",))
            .select_related("namespace")
            .filter(namespace=namespace, pk__in=ids, status=CandidateStatus.PENDING)
            .order_by("pk")
            if lessons_alike(leader, member)  # a stale or hand-made group: not these
        ]
        if decision == "approve":
            _ensure_open(leader, "approved")
            if members and leader.max_severity == Severity.BLOCK and not override:
                raise NeedsOverride(
                    "This candidate has a blocking audit finding; an admin must "
                    "approve it with an explicit override."
                )
            for member in members:
                candidate_supersede(newer=member, survivor=leader, actor=actor.label)
            leader = candidate_approve(
                namespace=namespace,
                candidate_id=leader_id,
                actor=actor,
                note=note,
                override=override,
                labels=labels,
                replace_strategy_id=replace_strategy_id,
            )
            return leader, [m.pk for m in members]
        action = candidate_deny if decision == "deny" else candidate_mark_conflicted
        leader = action(
            namespace=namespace,
            candidate_id=leader_id,
            actor=actor,
            note=note,
            labels=labels,
        )
        for member in members:
            action(
                namespace=namespace,
                candidate_id=member.pk,
                actor=actor,
                note=note,
                labels=labels,
            )
        return leader, [m.pk for m in members]


# --- decisions the system takes: merging duplicates, background auto-apply ----------


def candidate_supersede(
    *, newer, survivor, actor: str = SYSTEM_ACTOR, reaudit: bool = True
) -> None:
    """Mark `newer` superseded by `survivor` and move its evidence over (the runs the
    survivor lacks, in one insert), with an audit-trail row. Both rows must be locked
    by the caller (the audit does; so does a reviewer's group decision, with the
    reviewer as `actor`). `reaudit=False`: the caller queues the re-audit of what
    names `newer` itself (a set's audit does, once for its merges)."""
    count_before = survivor.evidence_count
    evidence_rows = list(newer.evidence.all())
    held = set(
        survivor.evidence.filter(
            trajectory_id__in=[row.trajectory_id for row in evidence_rows]
        ).values_list("trajectory_id", flat=True)
    )
    moved = [row for row in evidence_rows if row.trajectory_id not in held]
    CandidateEvidence.objects.bulk_create(
        CandidateEvidence(
            candidate=survivor,
            trajectory_id=row.trajectory_id,
            step_indexes=row.step_indexes,
            reflection_id=row.reflection_id,
        )
        for row in moved
    )
    added = [str(row.trajectory_id) for row in moved]
    if evidence_rows:
        survivor.evidence_count = survivor.evidence.count()
    else:  # a proposal without runs still counts as one more sighting
        survivor.evidence_count += max(newer.evidence_count, 1)
    survivor.save(update_fields=["evidence_count", "updated_at"])
    from_status = newer.status
    newer.status = CandidateStatus.SUPERSEDED
    newer.superseded_by = survivor
    newer.decided_by = actor
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
        actor=actor,
        action="supersede",
        target_type="candidate",
        target_id=newer.pk,
        candidate=newer,
        from_status=from_status,
        to_status=CandidateStatus.SUPERSEDED,
        note=newer.decision_note,
        data={
            "survivor": survivor.pk,
            "evidence_added": len(added),
            "evidence_count": survivor.evidence_count,
            # what reopening it takes back (`_unmerge`)
            "trajectories_added": added,
            "evidence_count_before": count_before,
        },
    )
    if reaudit:
        candidate_related_reaudit(candidate_id=newer.pk)


def _unmerge(candidate: LearningCandidate) -> dict:
    """Take a superseded candidate back out of its survivor: the evidence rows and
    the count its merge added there (as its `supersede` audit row recorded them)."""
    survivor = (
        LearningCandidate.objects.select_for_update(of=("self",))
        .filter(pk=candidate.superseded_by_id)
        .first()
    )
    merge = (
        AuditEvent.objects.filter(candidate=candidate, action="supersede")
        .order_by("-created_at", "-id")
        .first()
    )
    if survivor is None or merge is None:
        return {}
    data = merge.data or {}
    added = data.get("trajectories_added") or []
    if added:
        CandidateEvidence.objects.filter(
            candidate=survivor, trajectory_id__in=added
        ).delete()
    if "evidence_count_before" in data:
        grew = data.get("evidence_count", 0) - data["evidence_count_before"]
        survivor.evidence_count = max(survivor.evidence_count - max(grew, 0), 0)
        survivor.save(update_fields=["evidence_count", "updated_at"])
    return {"unmerged_from": survivor.pk, "evidence_removed": len(added)}


def _has_findings_at_or_above_warn(candidate: LearningCandidate) -> bool:
    """A warn or block finding that still stands (a dismissed warn does not)."""
    if candidate.max_severity == Severity.BLOCK:
        return True
    severity = (
        report_max_severity(candidate.audit)
        if candidate.audit
        else candidate.max_severity
    )
    return severity in (Severity.WARN, Severity.BLOCK)


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


# --- a namespace's guidance: canned reasons, decision tags, guidelines (admins) -----


def guideline_update(*, namespace: Namespace, actor: str, text: str) -> Guideline:
    """Replace the namespace's reviewing guidelines (markdown), with before/after in
    the audit trail."""
    text = (text or "").strip()
    if len(text) > MAX_GUIDELINE_TEXT:
        raise ReviewError(f"Guidelines are at most {MAX_GUIDELINE_TEXT} characters.")
    with transaction.atomic():
        guideline, _ = Guideline.objects.select_for_update().get_or_create(
            namespace=namespace
        )
        if guideline.text == text:
            return guideline
        before = guideline.text
        guideline.text, guideline.updated_by = text, actor
        guideline.save()
        audit_event_record(
            namespace=namespace,
            actor=actor,
            action="guideline_edit",
            target_type="guideline",
            target_id=namespace.slug,
            data={"before": {"text": before}, "after": {"text": text}},
        )
    return guideline


def review_tag_save(
    *, namespace: Namespace, actor: str, slug: str, label: str = ""
) -> ReviewTag:
    """Create a decision tag (or relabel an existing one)."""
    slug = slugify((slug or "").strip())[:50]
    if not slug:
        raise ReviewError("A tag needs a name (letters, digits, hyphens).")
    with transaction.atomic():
        tag, created = ReviewTag.objects.get_or_create(
            namespace=namespace,
            slug=slug,
            defaults={"label": (label or "").strip()[:100]},
        )
        if not created and label and tag.label != label.strip()[:100]:
            tag.label = label.strip()[:100]
            tag.save(update_fields=["label"])
        audit_event_record(
            namespace=namespace,
            actor=actor,
            action="tag_create" if created else "tag_edit",
            target_type="tag",
            target_id=slug,
            data={"label": tag.label},
        )
    return tag


def review_tag_delete(*, namespace: Namespace, actor: str, slug: str) -> None:
    """Remove a tag (decisions made with it keep their audit rows, not the label)."""
    with transaction.atomic():
        deleted, _ = ReviewTag.objects.filter(namespace=namespace, slug=slug).delete()
        if not deleted:
            raise ReviewError(f"No tag {slug!r} in this namespace.")
        audit_event_record(
            namespace=namespace,
            actor=actor,
            action="tag_delete",
            target_type="tag",
            target_id=slug,
        )


def canned_reason_save(
    *,
    namespace: Namespace,
    actor: str,
    text: str,
    tags=(),
    reason_id: int | None = None,
    active: bool = True,
) -> CannedReason:
    """Create a canned denial reason, or change one (`reason_id`): its text, tags, or
    whether reviewers are offered it (`active`). Each change is in the audit trail."""
    text = " ".join((text or "").split())
    if not text:
        raise ReviewError("A canned reason needs its text.")
    if len(text) > MAX_REASON_TEXT:
        raise ReviewError(f"A canned reason is at most {MAX_REASON_TEXT} characters.")
    labels = decision_labels(namespace=namespace, tags=tags)
    with transaction.atomic():
        if reason_id:
            reason = (
                CannedReason.objects.select_for_update()
                .filter(namespace=namespace, pk=reason_id)
                .first()
            )
            if reason is None:
                raise ReviewError(f"No canned reason {reason_id} in this namespace.")
            before = {"text": reason.text, "active": reason.active}
            reason.text, reason.active = text, active
            reason.save(update_fields=["text", "active"])
        else:
            top = CannedReason.objects.filter(namespace=namespace).count()
            reason = CannedReason.objects.create(
                namespace=namespace, text=text, position=top, active=active
            )
            before = {}
        reason.tags.set(labels.tags)
        audit_event_record(
            namespace=namespace,
            actor=actor,
            action="reason_edit" if reason_id else "reason_create",
            target_type="reason",
            target_id=reason.pk,
            data={
                "before": before,
                "after": {
                    "text": text,
                    "active": active,
                    "tags": [t.slug for t in labels.tags],
                },
            },
        )
    return reason
