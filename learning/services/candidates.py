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
from django.utils import timezone

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
    Webhook,
)
from learning.services.audit import (
    candidates_audit_after_commit,
    candidates_audit_enqueue,
)
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
    *, namespace: Namespace, **proposal
) -> tuple[LearningCandidate, bool]:
    """Store a candidate, or add evidence to the pending one with the same fingerprint.

    Returns (candidate, created). Candidates below their kind's confidence floor are
    kept with ``below_floor=True`` (hidden from the default queue). Strategy and
    procedure candidates without a playbook get the task type's playbook. A run already
    counted as evidence is not counted twice, so reflecting a run again adds nothing.

    Strategy-like kinds are stored in the lesson shape (`learning.lessons`): given as
    polarity/when/directive/why, or read from `content` (then `shape_classified`), and
    their content is the rendering of that shape — exactly what recall will hand out.

    The keywords are those of `CandidateProposal`; this is `candidates_create` with a
    set of one, so the API, the console and the workers share one rule."""
    return candidates_create(namespace=namespace, proposals=[proposal])[0]


@dataclass
class CandidateProposal:
    """One proposed candidate, as `candidate_create` takes it."""

    kind: str
    content: str = ""
    rationale: str = ""
    confidence: float = 0.5
    task_type: str = ""
    agent: str = ""
    playbook: object = None
    skill: object = None
    memory_scope: str = ""
    user_id: str = ""
    entity: str = ""
    patch: str = ""
    base_hash: str = ""
    evidence: Iterable[EvidenceRef] = ()
    reflection: Reflection | None = None
    source: str = "reflection"
    proposed_by: str = ""
    key: str = ""
    polarity: str = ""
    when: str = ""
    directive: str = ""
    why: str = ""
    provenance: str = ""


@dataclass
class _Prepared:
    """A proposal redacted, validated and resolved: the row it would insert, its
    fingerprint and its evidence by run."""

    row: dict
    shape: dict
    key: str
    fingerprint: str
    confidence: float
    by_run: dict  # run id -> step indexes
    reflection: Reflection | None


def _proposal_prepare(  # noqa: C901 - one validation per field, in the API's order
    *, namespace: Namespace, playbooks: dict, proposal: CandidateProposal
) -> _Prepared:
    p = proposal
    text = _text_redacted(
        content=p.content,
        rationale=p.rationale,
        user_id=p.user_id,
        entity=p.entity,
        task_type=p.task_type,
        agent=p.agent,
        patch=p.patch,
        key=p.key,
        when=p.when,
        directive=p.directive,
        why=p.why,
    )
    kind, content = p.kind, (text["content"] or "").strip()
    user_id, entity, task_type = text["user_id"], text["entity"], text["task_type"]
    if kind not in CandidateKind.values:
        raise CandidateInvalid(
            "kind", f"unknown kind {kind!r}; use one of {CandidateKind.values}"
        )
    if not content and not (text["directive"] or "").strip():
        raise CandidateInvalid("content", "content must not be empty.")
    shape = lesson_shape_fields(
        kind=kind,
        content=content,
        polarity=p.polarity,
        when=text["when"],
        directive=text["directive"],
        why=text["why"],
        provenance=p.provenance or _PROVENANCE_BY_SOURCE.get(p.source, ""),
    )
    content = shape.pop("content", content)
    if not content:
        raise CandidateInvalid("content", "content must not be empty.")
    if not 0.0 <= float(p.confidence) <= 1.0:
        raise CandidateInvalid("confidence", "confidence must be between 0 and 1.")
    playbook, memory_scope = p.playbook, p.memory_scope
    if kind in MEMORY_KINDS:
        memory_scope = memory_scope or ("user" if user_id else "namespace")
    elif kind != CandidateKind.PATCH_SKILL and playbook is None:
        if task_type not in playbooks:
            playbooks[task_type] = playbook_for_task_type(
                namespace=namespace, task_type=task_type
            )
        playbook = playbooks[task_type]
    scope = _scope_label(
        kind=kind,
        playbook=playbook,
        skill=p.skill,
        memory_scope=memory_scope,
        user_id=user_id,
        entity=entity,
    )
    key = text["key"]
    by_run: dict[uuid.UUID, set[int]] = {}
    for ref in p.evidence:
        by_run.setdefault(uuid.UUID(str(ref.run_id)), set()).update(
            int(i) for i in ref.step_indexes
        )
    row = dict(
        namespace=namespace,
        kind=kind,
        content=content,
        rationale=(text["rationale"] or "").strip(),
        confidence=round(float(p.confidence), 3),
        playbook=playbook,
        skill=p.skill,
        memory_scope=memory_scope if kind in MEMORY_KINDS else "",
        user_id=user_id or "",
        entity=entity or "",
        task_type=task_type or "",
        agent=text["agent"] or "",
        patch=text["patch"] or "",
        base_hash=p.base_hash or "",
        source=p.source,
        proposed_by=p.proposed_by or "",
        reflection=p.reflection,
        below_floor=float(p.confidence) < confidence_floor(kind),
        evidence_count=len(by_run),
        **shape,
    )
    return _Prepared(
        row=row,
        shape=shape,
        key=key,
        fingerprint=candidate_fingerprint(kind=kind, key=key or content, scope=scope),
        confidence=float(p.confidence),
        by_run=by_run,
        reflection=p.reflection,
    )


@transaction.atomic
def candidates_create(
    *, namespace: Namespace, proposals: Sequence, audit_here: bool = False
) -> list[tuple[LearningCandidate, bool]]:
    """`candidate_create` for a set of proposals (dicts of its keywords, or
    `CandidateProposal`s) in one namespace, with the same outcome as creating them one
    by one in order, in a fixed number of queries: one fingerprint lock and one
    look-up of the pending candidates for the whole set, one read of their evidence,
    then bulk inserts and updates; counts are computed, never re-counted (under the
    fingerprint locks nothing else adds evidence to these candidates). Returns
    (candidate, created) per proposal, in order. New candidates are audited by a
    queued task, or by this process after the commit with `audit_here`."""
    proposals = [
        p if isinstance(p, CandidateProposal) else CandidateProposal(**p)
        for p in proposals
    ]
    playbooks: dict = {}
    prepared = [
        _proposal_prepare(namespace=namespace, playbooks=playbooks, proposal=p)
        for p in proposals
    ]
    if not prepared:
        return []
    fingerprints = sorted({p.fingerprint for p in prepared})
    hooks = _fingerprints_lock(namespace_id=namespace.pk, fingerprints=fingerprints)
    oldest: dict[str, LearningCandidate] = {}
    for row in (
        LearningCandidate.objects.select_for_update()
        .filter(
            namespace=namespace,
            fingerprint__in=fingerprints,
            status=CandidateStatus.PENDING,
        )
        .order_by("created_at", "id")
    ):
        oldest.setdefault(row.fingerprint, row)
    writer = _SetWriter(
        namespace=namespace,
        existing=list(oldest.values()),
        hooks=hooks,
        audit_here=audit_here,
    )
    writer.evidence_load(run_ids={r for p in prepared for r in p.by_run})
    out = []
    for item in prepared:
        existing = oldest.get(item.fingerprint)
        if (
            existing is not None
            and not item.key
            and _changes_value(existing, item.row["content"], item.shape)
        ):
            existing = None  # same words, another value or polarity: a conflict
        if existing is None:
            candidate = writer.new(item)
            oldest.setdefault(item.fingerprint, candidate)
            out.append((candidate, True))
        else:
            writer.merge(existing, item)
            out.append((existing, False))
    writer.flush()
    return out


class _SetWriter:
    """The writes of `candidates_create`, kept in memory until `flush`: new candidates
    and evidence rows, and the changed counts and step indexes of existing ones."""

    def __init__(
        self, *, namespace, existing: list, hooks: bool, audit_here: bool = False
    ):
        self.namespace = namespace
        self.audit_here = audit_here  # audited by this process after the commit
        self.hooks = hooks  # an active webhook: new candidates emit their event
        self.existing = existing
        self.evidence: dict = {}  # (id(candidate), run id) -> CandidateEvidence
        self.new_candidates: list[LearningCandidate] = []
        self.new_evidence: list[CandidateEvidence] = []
        self.changed_candidates: dict = {}  # id(candidate) -> candidate (stored ones)
        self.changed_evidence: dict = {}  # id(row) -> row (stored ones)

    def evidence_load(self, *, run_ids: set) -> None:
        if not self.existing or not run_ids:
            return
        by_pk = {c.pk: c for c in self.existing}
        for row in CandidateEvidence.objects.filter(
            candidate_id__in=by_pk, trajectory_id__in=run_ids
        ):
            self.evidence[(id(by_pk[row.candidate_id]), row.trajectory_id)] = row

    def _evidence_add(self, candidate, item: _Prepared) -> int:
        """Rows for runs not yet behind the candidate; merged step indexes otherwise."""
        added = 0
        for run_id, steps in item.by_run.items():
            row = self.evidence.get((id(candidate), run_id))
            if row is None:
                row = CandidateEvidence(
                    candidate=candidate,
                    trajectory_id=run_id,
                    step_indexes=sorted(steps),
                    reflection=item.reflection,
                )
                self.evidence[(id(candidate), run_id)] = row
                self.new_evidence.append(row)
                added += 1
            elif not steps <= set(row.step_indexes):
                row.step_indexes = sorted(steps | set(row.step_indexes))
                if row.pk is not None:
                    self.changed_evidence[id(row)] = row
        return added

    def new(self, item: _Prepared) -> LearningCandidate:
        candidate = LearningCandidate(fingerprint=item.fingerprint, **item.row)
        self.new_candidates.append(candidate)
        self._evidence_add(candidate, item)
        return candidate

    def merge(self, candidate: LearningCandidate, item: _Prepared) -> None:
        added = self._evidence_add(candidate, item)
        if not added:
            return
        candidate.evidence_count += added
        # More independent runs showing it: more confidence, by the one rule.
        candidate.confidence = max(
            candidate.confidence,
            item.confidence,
            evidence_confidence(base=item.confidence, runs=candidate.evidence_count),
        )
        candidate.below_floor = candidate.confidence < confidence_floor(candidate.kind)
        if candidate.pk is not None:
            self.changed_candidates[id(candidate)] = candidate

    def flush(self) -> None:
        if self.new_candidates:
            LearningCandidate.objects.bulk_create(self.new_candidates)
        if self.changed_candidates:
            now = timezone.now()
            changed = list(self.changed_candidates.values())
            for candidate in changed:
                candidate.updated_at = now
            LearningCandidate.objects.bulk_update(
                changed, ["evidence_count", "confidence", "below_floor", "updated_at"]
            )
        if self.new_evidence:
            CandidateEvidence.objects.bulk_create(
                self.new_evidence, ignore_conflicts=True
            )
        if self.changed_evidence:
            CandidateEvidence.objects.bulk_update(
                list(self.changed_evidence.values()), ["step_indexes"]
            )
        if self.new_candidates:
            if self.audit_here:
                candidates_audit_after_commit(candidates=self.new_candidates)
            else:
                candidates_audit_enqueue(candidates=self.new_candidates)
            for candidate in self.new_candidates if self.hooks else []:
                candidate_event_emit(candidate=candidate, event="candidate.created")


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


def _fingerprints_lock(*, namespace_id: int, fingerprints: list[str]) -> bool:
    """Two workers finding the same new lesson at once must make one candidate: on
    PostgreSQL a transaction-scoped advisory lock per (namespace, fingerprint) orders
    them, taken for a whole set in one statement, in key order so that two sets never
    wait for each other in a circle (SQLite already serialises writers). The same
    statement says whether the namespace has an active webhook (whether new candidates
    have an event to record), so a set pays no query for that either."""
    if connection.vendor != "postgresql":
        return Webhook.objects.filter(namespace_id=namespace_id, active=True).exists()
    keys = sorted(
        {
            int(hashlib.sha256(f"{namespace_id}:{fp}".encode()).hexdigest()[:15], 16)
            for fp in fingerprints
        }
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(k)), EXISTS (SELECT 1 FROM"
            " learning_webhook w WHERE w.namespace_id = %s AND w.active)"
            " FROM unnest(%s::bigint[]) AS u(k)",
            [namespace_id, keys],
        )
        return bool(cursor.fetchone()[1])


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
