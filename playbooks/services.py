"""Writes for playbooks and their strategies by hand: create, settings, add, edit,
retire, move — each change a new version (`playbooks.versions`). Also which playbook
a task type learns into."""

from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils.text import slugify

from learning.lessons import LessonInvalid, lesson_fields
from learning.limits import MAX_LESSON_TEXT
from learning.models import Namespace, Provenance
from playbooks.models import (
    ChangeKind,
    LearningMode,
    Playbook,
    PlaybookVersion,
    Scope,
    Strategy,
    StrategyType,
)
from playbooks.versions import PlaybookError, playbook_lock, playbook_version_commit
from review.trail import audit_event_record

# --- playbooks ----------------------------------------------------------------------


@transaction.atomic
def playbook_create(
    *,
    namespace: Namespace,
    slug: str,
    name: str = "",
    scope: str = "team",
    mode: str = "propose",
    task_types: list[str] | None = None,
    created_by: str = "system",
) -> Playbook:
    """A new playbook starts at version 1, empty."""
    playbook = Playbook.objects.create(
        namespace=namespace,
        slug=slug,
        name=name or slug,
        scope=scope,
        mode=mode,
        task_types=task_types or [],
        current_version=1,
        production_version=1,
    )
    PlaybookVersion.objects.create(
        playbook=playbook,
        number=1,
        content=[],
        diff={},
        change_kind=ChangeKind.CREATE,
        note="created",
        created_by=created_by,
        production_since=playbook.created_at,
    )
    return playbook


def playbook_create_checked(
    *,
    namespace: Namespace,
    slug: str,
    name: str = "",
    scope: str = Scope.TEAM,
    mode: str = LearningMode.PROPOSE,
    task_types: list[str] | None = None,
    actor: str,
) -> Playbook:
    """playbook_create for people: validates, refuses a taken slug, audits."""
    slug = (slug or "").strip()
    if not slug or slugify(slug) != slug:
        raise PlaybookError("Use lowercase letters, digits and hyphens.", field="slug")
    if scope not in Scope.values:
        raise PlaybookError(f"One of {', '.join(Scope.values)}.", field="scope")
    if mode not in LearningMode.values:
        raise PlaybookError(f"One of {', '.join(LearningMode.values)}.", field="mode")
    with transaction.atomic():
        if Playbook.objects.filter(namespace=namespace, slug=slug).exists():
            raise PlaybookError(
                f"A playbook '{slug}' already exists in this namespace.",
                field="slug",
                code="duplicate",
            )
        playbook = playbook_create(
            namespace=namespace,
            slug=slug,
            name=name,
            scope=scope,
            mode=mode,
            task_types=task_types,
            created_by=actor,
        )
        audit_event_record(
            namespace=namespace,
            actor=actor,
            action="playbook_create",
            target_type="playbook",
            target_id=playbook.slug,
            data={"version": 1},
        )
    return playbook


@transaction.atomic
def playbook_update(*, playbook: Playbook, actor: str, **changes: Any) -> Playbook:
    """Settings (name, description, scope, mode, auto-apply threshold, task types): not
    content, so no new version, but audited with the before/after values."""
    allowed = {
        "name",
        "description",
        "scope",
        "mode",
        "auto_apply_threshold",
        "task_types",
    }
    unknown = set(changes) - allowed
    if unknown:
        raise PlaybookError(
            f"Unknown field {sorted(unknown)[0]}.", field=sorted(unknown)[0]
        )
    if "scope" in changes and changes["scope"] not in Scope.values:
        raise PlaybookError(f"One of {', '.join(Scope.values)}.", field="scope")
    if "mode" in changes and changes["mode"] not in LearningMode.values:
        raise PlaybookError(f"One of {', '.join(LearningMode.values)}.", field="mode")
    if "auto_apply_threshold" in changes:
        value = changes["auto_apply_threshold"]
        if not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise PlaybookError("A number from 0 to 1.", field="auto_apply_threshold")
    if "name" in changes and not (changes["name"] or "").strip():
        raise PlaybookError("A playbook needs a name.", field="name")
    playbook = Playbook.objects.select_for_update().get(pk=playbook.pk)
    before = {k: getattr(playbook, k) for k in changes}
    for key, value in changes.items():
        setattr(playbook, key, value)
    playbook.save()
    diff = {
        k: {"from": before[k], "to": v} for k, v in changes.items() if before[k] != v
    }
    if diff:
        audit_event_record(
            namespace=playbook.namespace,
            actor=actor,
            action="playbook_settings",
            target_type="playbook",
            target_id=playbook.slug,
            data={"diff": diff},
        )
    return playbook


def _next_position(playbook: Playbook) -> int:
    top = Strategy.objects.filter(playbook=playbook).aggregate(p=Max("position"))["p"]
    return 0 if top is None else top + 1


def _clean_strategy_fields(
    *, type: str | None, description: str | None, confidence=None
):
    if type is not None and type not in StrategyType.values:
        raise PlaybookError("Either 'helpful' or 'harmful'.", field="type")
    if description is not None and not description.strip():
        raise PlaybookError("A strategy needs a description.", field="description")
    if description is not None and len(description.strip()) > MAX_LESSON_TEXT:
        raise PlaybookError(
            f"At most {MAX_LESSON_TEXT} characters.", field="description"
        )
    if confidence is not None and (
        not isinstance(confidence, (int, float)) or not 0 <= confidence <= 1
    ):
        raise PlaybookError("A number from 0 to 1.", field="confidence")


SHAPE_FIELDS = ("polarity", "when", "directive", "why")


def strategy_shape(
    *,
    type: str,
    description: str = "",
    polarity: str = "",
    when: str = "",
    directive: str = "",
    why: str = "",
) -> dict[str, Any]:
    """A strategy's lesson shape (`learning.lessons.lesson_fields`), stated or read
    from its text, and its description rendered from it — the text recall hands out."""
    kind = "strategy_harmful" if type == StrategyType.HARMFUL else "strategy_helpful"
    try:
        fields = lesson_fields(
            kind=kind,
            content=description or "",
            polarity=polarity,
            when=when,
            directive=directive,
            why=why,
        )
    except LessonInvalid as exc:
        field = "description" if exc.field in ("content", "directive") else exc.field
        raise PlaybookError(exc.message, field=field)
    fields["description"] = fields.pop("content")
    return fields


def strategy_insert(
    *,
    playbook: Playbook,
    type: str,
    description: str = "",
    context: str = "",
    evidence: list | None = None,
    situations: str = "",
    confidence: float = 0.5,
    helpful_count: int = 0,
    source_candidate=None,
    position: int | None = None,
    provenance: str = "",
    **shape: str,
) -> Strategy:
    """A new live strategy row (the caller commits the version). `shape` holds
    polarity/when/directive/why when known; otherwise they are read from the text."""
    _clean_strategy_fields(type=type, description=None, confidence=confidence)
    fields = strategy_shape(type=type, description=description, **shape)
    return Strategy.objects.create(
        playbook=playbook,
        type=type,
        context=(context or "").strip(),
        evidence=list(evidence or []),
        situations=situations,
        confidence=confidence,
        helpful_count=helpful_count,
        source_candidate=source_candidate,
        position=_next_position(playbook) if position is None else position,
        provenance=provenance,
        **fields,
    )


def _get_strategy(playbook: Playbook, strategy_id) -> Strategy:
    try:
        return Strategy.objects.get(playbook=playbook, pk=int(strategy_id))
    except (TypeError, ValueError, Strategy.DoesNotExist):
        raise PlaybookError(
            "No such strategy in this playbook.", field="id", code="not_found"
        )


@transaction.atomic
def strategy_add(
    *,
    playbook: Playbook,
    actor: str,
    type: str,
    description: str = "",
    context: str = "",
    confidence: float = 0.7,
    note: str = "",
    audit_findings: list | None = None,
    **shape: str,
) -> tuple[Strategy, PlaybookVersion]:
    """A hand-written strategy (free text, or polarity/when/directive/why): a new
    version (`audit_findings`: the audit's findings on it the admin saved anyway,
    recorded in the version's audit event)."""
    playbook = playbook_lock(playbook=playbook)
    strategy = strategy_insert(
        playbook=playbook,
        type=type,
        description=description,
        context=context,
        confidence=confidence,
        provenance=Provenance.REVIEWER,
        **shape,
    )
    version = playbook_version_commit(
        playbook=playbook,
        change_kind=ChangeKind.EDIT,
        actor=actor,
        note=note or f"added strategy {strategy.pk}",
        audit_findings=audit_findings,
    )
    return strategy, version


@transaction.atomic
def strategy_edit(
    *,
    playbook: Playbook,
    strategy_id: int,
    actor: str,
    note: str = "",
    audit_findings: list | None = None,
    **changes: Any,
) -> tuple[Strategy, PlaybookVersion]:
    """Edit an active strategy: its type, text (free, or polarity/when/directive/why:
    the text is then rendered from them), context or confidence."""
    allowed = {"type", "description", "context", "confidence", *SHAPE_FIELDS}
    unknown = set(changes) - allowed
    if unknown:
        raise PlaybookError(
            f"Unknown field {sorted(unknown)[0]}.", field=sorted(unknown)[0]
        )
    _clean_strategy_fields(
        type=changes.get("type"),
        description=changes.get("description"),
        confidence=changes.get("confidence"),
    )
    playbook = playbook_lock(playbook=playbook)
    strategy = _get_strategy(playbook, strategy_id)
    if not strategy.active:
        raise PlaybookError("This strategy is retired.", field="id")
    for key in ("type", "context", "confidence"):
        if key in changes:
            value = changes[key]
            setattr(strategy, key, value.strip() if isinstance(value, str) else value)
    if {"description", *SHAPE_FIELDS} & set(changes):
        _reshape(strategy, changes)
    strategy.save()
    version = playbook_version_commit(
        playbook=playbook,
        change_kind=ChangeKind.EDIT,
        actor=actor,
        note=note or f"edited strategy {strategy.pk}",
        audit_findings=audit_findings,
    )
    return strategy, version


def _reshape(strategy: Strategy, changes: dict) -> None:
    """New text read afresh; a changed shape field keeps the others and re-renders."""
    if "description" in changes and not (set(SHAPE_FIELDS) & set(changes)):
        shape = {}
        description = changes["description"]
    else:
        shape = {f: changes.get(f, getattr(strategy, f)) for f in SHAPE_FIELDS}
        description = changes.get("description", strategy.description)
    for field, value in strategy_shape(
        type=strategy.type, description=description, **shape
    ).items():
        setattr(strategy, field, value)


@transaction.atomic
def strategy_retire(
    *, playbook: Playbook, strategy_id: int, actor: str, note: str = ""
) -> PlaybookVersion:
    playbook = playbook_lock(playbook=playbook)
    strategy = _get_strategy(playbook, strategy_id)
    if not strategy.active:
        raise PlaybookError("This strategy is already retired.", field="id")
    strategy.active = False
    strategy.save(update_fields=["active", "updated_at"])
    return playbook_version_commit(
        playbook=playbook,
        change_kind=ChangeKind.EDIT,
        actor=actor,
        note=note or f"retired strategy {strategy.pk}",
    )


@transaction.atomic
def strategy_move(
    *, playbook: Playbook, strategy_id: int, to_index: int, actor: str
) -> PlaybookVersion:
    """Move an active strategy to `to_index` (0-based) among the active ones."""
    playbook = playbook_lock(playbook=playbook)
    strategy = _get_strategy(playbook, strategy_id)
    if not strategy.active:
        raise PlaybookError("This strategy is retired.", field="id")
    ordered = [
        s
        for s in Strategy.objects.filter(playbook=playbook, active=True).order_by(
            "position", "id"
        )
        if s.pk != strategy.pk
    ]
    to_index = max(0, min(int(to_index), len(ordered)))
    ordered.insert(to_index, strategy)
    for index, item in enumerate(ordered):
        if item.position != index:
            item.position = index
            item.save(update_fields=["position", "updated_at"])
    return playbook_version_commit(
        playbook=playbook,
        change_kind=ChangeKind.EDIT,
        actor=actor,
        note=f"moved strategy {strategy.pk} to #{to_index + 1}",
    )


# --- which playbook a task type learns into ------------------------------------------


def playbook_slug_for_task_type(task_type: str) -> str:
    """`airline.change_flight` feeds the `airline` playbook unless one claims it."""
    head = (task_type or "general").split(".")[0]
    return slugify(head) or "general"


def playbook_for_task_type(
    *, namespace: Namespace, task_type: str, create: bool = True
) -> Playbook | None:
    """The playbook a run of this task type learns into: one that lists the task type,
    else the one named by the task type's first segment (created when missing)."""
    claimed = [
        p
        for p in Playbook.objects.filter(namespace=namespace)
        if task_type and task_type in (p.task_types or [])
    ]
    if claimed:
        return claimed[0]
    slug = playbook_slug_for_task_type(task_type)
    playbook = Playbook.objects.filter(namespace=namespace, slug=slug).first()
    if playbook is None and create:
        with transaction.atomic():
            playbook = Playbook.objects.select_for_update().filter(
                namespace=namespace, slug=slug
            ).first() or playbook_create(
                namespace=namespace, slug=slug, name=slug.title()
            )
    return playbook
