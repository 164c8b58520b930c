"""Learning candidates: creation (from reflection, batch reflection and agents) with
confidence floors and evidence merging, and the reads the API and console share."""

import hashlib
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Prefetch, QuerySet

from learning.lessons import LessonInvalid, evidence_confidence, lesson_fields
from learning.models import (
    MEMORY_KINDS,
    SHAPED_KINDS,
    CandidateEvidence,
    CandidateKind,
    CandidateStatus,
    LearningCandidate,
    Namespace,
    Polarity,
    Provenance,
    Reflection,
    Trajectory,
)
from learning.services.audit import candidate_audit_enqueue
from learning.services.redaction import redact_fields
from learning.text.contradiction import LessonText, lesson_contradiction
from learning.webhooks import candidate_event_emit
from playbooks.models import LearningMode, Playbook, Skill
from playbooks.services import playbook_for_task_type

_WORD = re.compile(r"[a-z0-9_]+")
_NUMBER = re.compile(r"\b\d+(\.\d+)?\b")


class CandidateInvalid(Exception):
    """A proposal that cannot be stored; `field` names the offending input."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass
class EvidenceRef:
    """One run behind a candidate and the exact steps that show the lesson."""

    run_id: uuid.UUID
    step_indexes: Sequence[int] = field(default_factory=list)


def candidate_fingerprint(*, kind: str, key: str, scope: str = "") -> str:
    """The same lesson found again has the same fingerprint: kind, target scope and the
    lesson's words, lower-cased, numbers blanked, order of first appearance kept."""
    text = _NUMBER.sub("#", (key or "").lower())
    words = " ".join(_WORD.findall(text))
    return hashlib.sha256(f"{kind}|{scope}|{words}".encode()).hexdigest()


def _changes_value(existing: LearningCandidate, content: str, shape: dict) -> bool:
    """A lesson stated in its own words (no reflector key) whose fingerprint matches
    but which says something else: another number ("a 120 s timeout" against "10
    s"), another polarity. Never merged: the audit reports the conflict."""
    if existing.content == content:
        return False
    mine = LessonText(
        text=content,
        polarity=shape.get("polarity", ""),
        when=shape.get("when", ""),
        directive=shape.get("directive", ""),
        kind=existing.kind,
        entity=existing.entity,
    )
    theirs = LessonText(
        text=existing.content,
        polarity=existing.polarity,
        when=existing.when,
        directive=existing.directive,
        kind=existing.kind,
        entity=existing.entity,
    )
    if mine.shaped and theirs.shaped and mine.polarity != theirs.polarity:
        return True
    return lesson_contradiction(mine, theirs) is not None


def confidence_floor(kind: str) -> float:
    return float(settings.FLYWHEEL_CONFIDENCE_FLOORS.get(kind, 0.0))


def _scope_label(*, kind, playbook, skill, memory_scope, user_id, entity) -> str:
    if kind in MEMORY_KINDS:
        return f"memory:{memory_scope}:{user_id}:{entity}"
    if kind == CandidateKind.PATCH_SKILL:
        return f"skill:{getattr(skill, 'pk', '')}"
    return f"playbook:{getattr(playbook, 'pk', '')}"


# What a reflector or an agent writes into a candidate, and the column lengths: all
# of it redacted before it is stored (and served to every agent of the namespace).
_TEXT_FIELDS = {
    name: getattr(LearningCandidate._meta.get_field(name), "max_length", None)
    for name in ("content", "rationale", "user_id", "entity", "task_type", "agent")
} | {"patch": None, "key": None, "when": None, "directive": None, "why": None}


def _text_redacted(**text: str) -> dict[str, str]:
    text = {name: value or "" for name, value in text.items()}
    redact_fields(text, _TEXT_FIELDS, max_lengths=_TEXT_FIELDS)
    return text


@transaction.atomic
def candidate_create(
    *,
    namespace: Namespace,
    kind: str,
    content: str = "",
    rationale: str = "",
    confidence: float = 0.5,
    task_type: str = "",
    agent: str = "",
    playbook=None,
    skill=None,
    memory_scope: str = "",
    user_id: str = "",
    entity: str = "",
    patch: str = "",
    base_hash: str = "",
    evidence: Iterable[EvidenceRef] = (),
    reflection: Reflection | None = None,
    source: str = "reflection",
    proposed_by: str = "",
    key: str = "",
    polarity: str = "",
    when: str = "",
    directive: str = "",
    why: str = "",
    provenance: str = "",
) -> tuple[LearningCandidate, bool]:
    """Store a candidate, or add evidence to the pending one with the same fingerprint.

    Returns (candidate, created). Candidates below their kind's confidence floor are
    kept with ``below_floor=True`` (hidden from the default queue). Strategy and
    procedure candidates without a playbook get the task type's playbook. A run already
    counted as evidence is not counted twice, so reflecting a run again adds nothing.

    Strategy-like kinds are stored in the lesson shape (`learning.lessons`): given as
    polarity/when/directive/why, or read from `content` (then `shape_classified`), and
    their content is the rendering of that shape — exactly what recall will hand out.
    """
    text = _text_redacted(
        content=content,
        rationale=rationale,
        user_id=user_id,
        entity=entity,
        task_type=task_type,
        agent=agent,
        patch=patch,
        key=key,
        when=when,
        directive=directive,
        why=why,
    )
    content, rationale, user_id, entity = (
        text["content"],
        text["rationale"],
        text["user_id"],
        text["entity"],
    )
    task_type, agent, patch, key = (
        text["task_type"],
        text["agent"],
        text["patch"],
        text["key"],
    )
    when, directive, why = text["when"], text["directive"], text["why"]
    content = (content or "").strip()
    if kind not in CandidateKind.values:
        raise CandidateInvalid(
            "kind", f"unknown kind {kind!r}; use one of {CandidateKind.values}"
        )
    if not content and not (directive or "").strip():
        raise CandidateInvalid("content", "content must not be empty.")
    shape = lesson_shape_fields(
        kind=kind,
        content=content,
        polarity=polarity,
        when=when,
        directive=directive,
        why=why,
        provenance=provenance or _PROVENANCE_BY_SOURCE.get(source, ""),
    )
    content = shape.pop("content", content)
    if not content:
        raise CandidateInvalid("content", "content must not be empty.")
    if not 0.0 <= float(confidence) <= 1.0:
        raise CandidateInvalid("confidence", "confidence must be between 0 and 1.")
    if kind in MEMORY_KINDS:
        memory_scope = memory_scope or ("user" if user_id else "namespace")
    elif kind != CandidateKind.PATCH_SKILL and playbook is None:
        playbook = playbook_for_task_type(namespace=namespace, task_type=task_type)
    scope = _scope_label(
        kind=kind,
        playbook=playbook,
        skill=skill,
        memory_scope=memory_scope,
        user_id=user_id,
        entity=entity,
    )
    fingerprint = candidate_fingerprint(kind=kind, key=key or content, scope=scope)
    evidence = list(evidence)

    _fingerprint_lock(namespace_id=namespace.pk, fingerprint=fingerprint)
    existing = (
        LearningCandidate.objects.select_for_update()
        .filter(
            namespace=namespace, fingerprint=fingerprint, status=CandidateStatus.PENDING
        )
        .order_by("created_at", "id")
        .first()
    )
    if existing is not None and not key and _changes_value(existing, content, shape):
        existing = None  # same words, another value or polarity: a conflict, not more
    if existing is not None:
        added = _evidence_add(
            candidate=existing, evidence=evidence, reflection=reflection
        )
        if added:
            # Counted, not re-counted: under the fingerprint lock nothing else adds
            # evidence to this candidate.
            existing.evidence_count += added
            # More independent runs showing it: more confidence, by the one rule.
            existing.confidence = max(
                existing.confidence,
                float(confidence),
                evidence_confidence(
                    base=float(confidence), runs=existing.evidence_count
                ),
            )
            existing.below_floor = existing.confidence < confidence_floor(kind)
            existing.save(
                update_fields=[
                    "evidence_count",
                    "confidence",
                    "below_floor",
                    "updated_at",
                ]
            )
        return existing, False

    candidate = LearningCandidate.objects.create(
        namespace=namespace,
        kind=kind,
        content=content,
        rationale=(rationale or "").strip(),
        confidence=round(float(confidence), 3),
        playbook=playbook,
        skill=skill,
        memory_scope=memory_scope if kind in MEMORY_KINDS else "",
        user_id=user_id or "",
        entity=entity or "",
        task_type=task_type or "",
        agent=agent or "",
        patch=patch or "",
        base_hash=base_hash or "",
        source=source,
        proposed_by=proposed_by or "",
        reflection=reflection,
        fingerprint=fingerprint,
        below_floor=float(confidence) < confidence_floor(kind),
        evidence_count=len({str(ref.run_id) for ref in evidence}),
        **shape,
    )
    _evidence_add(
        candidate=candidate, evidence=evidence, reflection=reflection, new=True
    )
    candidate_audit_enqueue(candidate=candidate)
    candidate_event_emit(candidate=candidate, event="candidate.created")  # webhooks
    return candidate, True


_PROVENANCE_BY_SOURCE = {"agent": Provenance.AGENT, "batch": Provenance.BATCH}


def lesson_shape_fields(
    *, kind, content, polarity, when, directive, why, provenance
) -> dict:
    """The shape fields to store (and, for strategy-like kinds, the rendered content),
    by `learning.lessons.lesson_fields`. CandidateInvalid names a bad field."""
    if provenance and provenance not in Provenance.values:
        raise CandidateInvalid(
            "provenance", f"unknown provenance {provenance!r}; use {Provenance.values}"
        )
    if polarity and polarity not in Polarity.values:
        raise CandidateInvalid(
            "polarity", f"unknown polarity {polarity!r}; use 'do' or 'avoid'."
        )
    if kind not in SHAPED_KINDS:
        return {"provenance": provenance}
    try:
        fields = lesson_fields(
            kind=kind,
            content=content,
            polarity=polarity,
            when=when,
            directive=directive,
            why=why,
        )
    except LessonInvalid as exc:
        raise CandidateInvalid(exc.field, exc.message) from exc
    return {**fields, "provenance": provenance}


def _fingerprint_lock(*, namespace_id: int, fingerprint: str) -> None:
    """Two workers finding the same new lesson at once must make one candidate: on
    PostgreSQL a transaction-scoped advisory lock per (namespace, fingerprint) orders
    them (SQLite already serialises writers)."""
    if connection.vendor != "postgresql":
        return
    key = int(
        hashlib.sha256(f"{namespace_id}:{fingerprint}".encode()).hexdigest()[:15], 16
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _evidence_add(
    *, candidate, evidence: list[EvidenceRef], reflection, new: bool = False
) -> int:
    """Adds rows for runs not yet behind the candidate; merges step indexes otherwise
    (a `new` candidate has none yet: nothing to read)."""
    if not evidence:
        return 0
    by_run: dict[uuid.UUID, set[int]] = {}
    for ref in evidence:
        by_run.setdefault(uuid.UUID(str(ref.run_id)), set()).update(
            int(i) for i in ref.step_indexes
        )
    current = (
        {}
        if new
        else {
            e.trajectory_id: e
            for e in candidate.evidence.filter(trajectory_id__in=by_run)
        }
    )
    new_rows = []
    for run_id, steps in by_run.items():
        row = current.get(run_id)
        if row is None:
            new_rows.append(
                CandidateEvidence(
                    candidate=candidate,
                    trajectory_id=run_id,
                    step_indexes=sorted(steps),
                    reflection=reflection,
                )
            )
        elif not steps <= set(row.step_indexes):
            row.step_indexes = sorted(steps | set(row.step_indexes))
            row.save(update_fields=["step_indexes"])
    CandidateEvidence.objects.bulk_create(new_rows, ignore_conflicts=True)
    return len(new_rows)


def candidate_list(
    *, namespace: Namespace, filters=None
) -> QuerySet[LearningCandidate]:
    """Candidates of one namespace, newest first, filtered by CandidateFilter; two
    queries whatever the page size (the rows, then their evidence)."""
    from learning.candidate_filters import CandidateFilter

    qs = (
        LearningCandidate.objects.filter(namespace=namespace)
        .select_related("playbook", "skill")
        .prefetch_related(
            Prefetch(
                "evidence",
                queryset=CandidateEvidence.objects.order_by("created_at", "id"),
            )
        )
        .order_by("-created_at", "-id")
    )
    filterset = CandidateFilter(filters if filters is not None else {}, queryset=qs)
    if not filterset.is_valid():
        raise InvalidCandidateFilters(filterset.errors)
    return filterset.qs


def candidate_get(*, namespace: Namespace, candidate_id) -> LearningCandidate:
    return (
        LearningCandidate.objects.select_related("playbook", "skill")
        .prefetch_related("evidence")
        .get(namespace=namespace, pk=candidate_id)
    )


def runs_in_namespace(*, namespace: Namespace, run_ids: Iterable) -> list[Trajectory]:
    """The runs with these ids in the namespace; CandidateInvalid names a missing one."""
    wanted = []
    for raw in run_ids:
        try:
            wanted.append(uuid.UUID(str(raw)))
        except ValueError:
            raise CandidateInvalid("evidence_runs", f"{raw!r} is not a run id.")
    found = {
        r.id: r for r in Trajectory.objects.filter(namespace=namespace, id__in=wanted)
    }
    missing = [str(r) for r in wanted if r not in found]
    if missing:
        raise CandidateInvalid(
            "evidence_runs", f"no run {missing[0]} in your namespace."
        )
    return [found[r] for r in wanted]


class InvalidCandidateFilters(Exception):
    def __init__(self, errors):
        super().__init__("invalid filters")
        self.errors = errors


class ProposalRefused(Exception):
    """An agent may not propose into this target; the message says why."""


def candidate_propose(
    *, namespace: Namespace, proposed_by: str, data: dict
) -> tuple[LearningCandidate, bool]:
    """An agent's own proposal (POST /api/v1/candidates/). The target playbook is the
    named one or the task type's; it must exist and not be in `background` mode, where
    a clean candidate could be applied without any reviewer. In `agentic` and `propose`
    mode the proposal is audited and waits for review like every other candidate."""
    slug = data.get("playbook") or ""
    if slug:
        playbook = Playbook.objects.filter(namespace=namespace, slug=slug).first()
        if playbook is None:
            raise CandidateInvalid(
                "playbook", f"no playbook '{slug}' in your namespace."
            )
    else:
        playbook = playbook_for_task_type(
            namespace=namespace, task_type=data["task_type"], create=False
        )
        if playbook is None:
            raise CandidateInvalid(
                "task_type",
                f"no playbook learns from task type '{data['task_type']}'; "
                "name one with `playbook`.",
            )
    if playbook.mode == LearningMode.BACKGROUND:
        raise ProposalRefused(
            f"Playbook '{playbook.slug}' is in 'background' mode, where clean candidates are "
            "applied without review; agents may propose only to playbooks in 'agentic' or "
            "'propose' mode. Ask an admin to switch it to 'agentic'."
        )
    skill = None
    if data.get("skill"):
        skill = Skill.objects.filter(namespace=namespace, slug=data["skill"]).first()
        if skill is None:
            raise CandidateInvalid(
                "skill", f"no skill '{data['skill']}' in your namespace."
            )
    runs = runs_in_namespace(
        namespace=namespace, run_ids=data.get("evidence_runs") or []
    )
    return candidate_create(
        namespace=namespace,
        kind=data["kind"],
        content=data.get("content", ""),
        rationale=data.get("rationale", ""),
        confidence=data.get("confidence", 0.5),
        task_type=data.get("task_type") or "",
        agent=proposed_by.removeprefix("token:"),
        playbook=playbook,
        skill=skill,
        memory_scope=data.get("memory_scope", ""),
        user_id=data.get("user_id", ""),
        entity=data.get("entity", ""),
        patch=data.get("patch", ""),
        base_hash=data.get("base_hash", ""),
        evidence=[EvidenceRef(run_id=r.pk) for r in runs],
        source="agent",
        proposed_by=proposed_by,
        polarity=data.get("polarity", ""),
        when=data.get("when", ""),
        directive=data.get("directive", ""),
        why=data.get("why", ""),
    )
