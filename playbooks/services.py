"""Writes for playbooks, skills and policy: every change to a playbook's strategies or a
skill's text is a new immutable version with a diff, written atomically with an
AuditEvent. Apply (playbooks.apply), curation and rollback all go through here."""

import difflib
import hashlib
import uuid
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils.text import slugify

from learning.models import Namespace
from playbooks.models import (
    ChangeKind,
    HygienePolicy,
    LearningMode,
    Memory,
    Playbook,
    PlaybookVersion,
    Scope,
    Skill,
    SkillVersion,
    Strategy,
    StrategyType,
)
from review.trail import audit_event_record

# The fields of a strategy a version snapshot holds (besides id and key).
SNAPSHOT_FIELDS = (
    "type",
    "description",
    "context",
    "evidence",
    "confidence",
    "helpful_count",
    "harmful_count",
    "position",
)
POLICY_FIELDS = (
    "allowed_tools",
    "denied_tools",
    "egress_allowlist",
    "sensitive_paths",
    "protected_branches",
)


class PlaybookError(ValueError):
    """Bad input for a playbook/skill change; `field` names what was wrong."""

    def __init__(self, message: str, *, field: str = "detail", code: str = "invalid"):
        super().__init__(message)
        self.field = field
        self.code = code


# --- snapshots and diffs -------------------------------------------------------------


def strategy_snapshot(strategy: Strategy) -> dict[str, Any]:
    item = {"id": strategy.pk, "key": str(strategy.key)}
    for field in SNAPSHOT_FIELDS:
        item[field] = getattr(strategy, field)
    item["evidence"] = list(item["evidence"] or [])
    item["source_candidate"] = strategy.source_candidate_id
    return item


def playbook_snapshot(*, playbook: Playbook) -> list[dict[str, Any]]:
    """The active strategies in order, as a version's content."""
    return [
        strategy_snapshot(s)
        for s in Strategy.objects.filter(playbook=playbook, active=True).order_by(
            "position", "id"
        )
    ]


def _brief(item: dict) -> dict:
    return {
        "id": item.get("id"),
        "key": item.get("key"),
        "type": item.get("type"),
        "description": item.get("description"),
    }


def content_diff(old: list[dict], new: list[dict]) -> dict[str, list]:
    """added / removed / changed between two snapshots, matched by strategy key."""
    old_by = {i["key"]: i for i in old}
    new_by = {i["key"]: i for i in new}
    added = [_brief(i) for k, i in new_by.items() if k not in old_by]
    removed = [_brief(i) for k, i in old_by.items() if k not in new_by]
    changed = []
    for key, item in new_by.items():
        before = old_by.get(key)
        if before is None:
            continue
        fields = {
            f: {"from": before.get(f), "to": item.get(f)}
            for f in SNAPSHOT_FIELDS
            if before.get(f) != item.get(f)
        }
        if fields:
            changed.append({**_brief(item), "fields": fields})
    return {"added": added, "removed": removed, "changed": changed}


def diff_is_empty(diff: dict) -> bool:
    return not any(diff.get(k) for k in ("added", "removed", "changed"))


def text_hash(text: str) -> str:
    return hashlib.sha256((text or "").encode()).hexdigest()


def text_diff(old: str, new: str, *, name: str = "skill") -> str:
    return "".join(
        difflib.unified_diff(
            _lines(old), _lines(new), fromfile=f"a/{name}", tofile=f"b/{name}"
        )
    )


def _lines(text: str) -> list[str]:
    lines = (text or "").splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return lines


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
    )
    PlaybookVersion.objects.create(
        playbook=playbook,
        number=1,
        content=[],
        diff={},
        change_kind=ChangeKind.CREATE,
        note="created",
        created_by=created_by,
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


def playbook_version_commit(
    *,
    playbook: Playbook,
    change_kind: str,
    actor: str,
    note: str = "",
    candidate=None,
    rolled_back_to: int | None = None,
    allow_empty: bool = False,
    reverts: PlaybookVersion | None = None,
) -> PlaybookVersion:
    """Snapshot the live strategies as the next version, with its diff and audit row.
    Callers hold the playbook row lock (playbook_lock) and run inside a transaction."""
    previous = PlaybookVersion.objects.filter(
        playbook=playbook, number=playbook.current_version
    ).first()
    content = playbook_snapshot(playbook=playbook)
    diff = content_diff(previous.content if previous else [], content)
    if diff_is_empty(diff) and not allow_empty:
        raise PlaybookError("Nothing changed.", code="no_change")
    number = (
        PlaybookVersion.objects.filter(playbook=playbook).aggregate(n=Max("number"))[
            "n"
        ]
        or 0
    ) + 1
    version = PlaybookVersion.objects.create(
        playbook=playbook,
        number=number,
        content=content,
        diff=diff,
        change_kind=change_kind,
        note=note,
        created_by=actor,
        candidate=candidate,
        rolled_back_to=rolled_back_to,
        reverts=reverts,
    )
    playbook.current_version = number
    playbook.save(update_fields=["current_version", "updated_at"])
    audit_event_record(
        namespace=playbook.namespace,
        actor=actor,
        action=f"playbook_{change_kind}",
        target_type="playbook",
        target_id=playbook.slug,
        candidate=candidate,
        note=note,
        data={
            "version": number,
            "added": len(diff["added"]),
            "removed": len(diff["removed"]),
            "changed": len(diff["changed"]),
        },
    )
    return version


def playbook_lock(*, playbook: Playbook) -> Playbook:
    """Re-read the playbook FOR UPDATE: version numbers are handed out one at a time."""
    return (
        Playbook.objects.select_for_update()
        .select_related("namespace")
        .get(pk=playbook.pk)
    )


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
    if confidence is not None and (
        not isinstance(confidence, (int, float)) or not 0 <= confidence <= 1
    ):
        raise PlaybookError("A number from 0 to 1.", field="confidence")


def strategy_insert(
    *,
    playbook: Playbook,
    type: str,
    description: str,
    context: str = "",
    evidence: list | None = None,
    confidence: float = 0.5,
    helpful_count: int = 0,
    source_candidate=None,
    position: int | None = None,
) -> Strategy:
    """A new live strategy row (the caller commits the version)."""
    _clean_strategy_fields(type=type, description=description, confidence=confidence)
    return Strategy.objects.create(
        playbook=playbook,
        type=type,
        description=description.strip(),
        context=(context or "").strip(),
        evidence=list(evidence or []),
        confidence=confidence,
        helpful_count=helpful_count,
        source_candidate=source_candidate,
        position=_next_position(playbook) if position is None else position,
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
    description: str,
    context: str = "",
    confidence: float = 0.7,
    note: str = "",
) -> tuple[Strategy, PlaybookVersion]:
    """A hand-written strategy: a new version."""
    playbook = playbook_lock(playbook=playbook)
    strategy = strategy_insert(
        playbook=playbook,
        type=type,
        description=description,
        context=context,
        confidence=confidence,
    )
    version = playbook_version_commit(
        playbook=playbook,
        change_kind=ChangeKind.EDIT,
        actor=actor,
        note=note or f"added strategy {strategy.pk}",
    )
    return strategy, version


@transaction.atomic
def strategy_edit(
    *,
    playbook: Playbook,
    strategy_id: int,
    actor: str,
    note: str = "",
    **changes: Any,
) -> tuple[Strategy, PlaybookVersion]:
    """Edit type, description, context or confidence of an active strategy."""
    allowed = {"type", "description", "context", "confidence"}
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
    for key, value in changes.items():
        setattr(strategy, key, value.strip() if isinstance(value, str) else value)
    strategy.save()
    version = playbook_version_commit(
        playbook=playbook,
        change_kind=ChangeKind.EDIT,
        actor=actor,
        note=note or f"edited strategy {strategy.pk}",
    )
    return strategy, version


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


def playbook_restore_content(*, playbook: Playbook, content: list[dict]) -> None:
    """Make the live strategies equal `content` (rows matched by key; the rest retired)."""
    wanted = {item["key"]: item for item in content}
    rows = {str(s.key): s for s in Strategy.objects.filter(playbook=playbook)}
    for key, strategy in rows.items():
        if key not in wanted and strategy.active:
            strategy.active = False
            strategy.save(update_fields=["active", "updated_at"])
    for key, item in wanted.items():
        strategy = rows.get(key) or Strategy(playbook=playbook, key=uuid.UUID(key))
        for field in SNAPSHOT_FIELDS:
            setattr(strategy, field, item.get(field))
        strategy.evidence = list(item.get("evidence") or [])
        strategy.active = True
        if strategy.pk is None:
            strategy.source_candidate_id = item.get("source_candidate")
        strategy.save()


@transaction.atomic
def playbook_rollback(
    *, playbook: Playbook, number: int, actor: str, note: str = ""
) -> PlaybookVersion:
    """A new version whose content equals version `number`'s."""
    playbook = playbook_lock(playbook=playbook)
    target = PlaybookVersion.objects.filter(playbook=playbook, number=number).first()
    if target is None:
        raise PlaybookError(f"No version {number}.", field="version", code="not_found")
    playbook_restore_content(playbook=playbook, content=target.content)
    return playbook_version_commit(
        playbook=playbook,
        change_kind=ChangeKind.ROLLBACK,
        actor=actor,
        note=note or f"rolled back to version {number}",
        rolled_back_to=number,
        allow_empty=True,
    )


# --- skills -------------------------------------------------------------------------


@transaction.atomic
def skill_create(
    *, namespace: Namespace, slug: str, name: str = "", text: str = "", actor: str
) -> Skill:
    slug = (slug or "").strip()
    if not slug or slugify(slug) != slug:
        raise PlaybookError("Use lowercase letters, digits and hyphens.", field="slug")
    if Skill.objects.filter(namespace=namespace, slug=slug).exists():
        raise PlaybookError(
            f"A skill '{slug}' already exists in this namespace.",
            field="slug",
            code="duplicate",
        )
    skill = Skill.objects.create(
        namespace=namespace, slug=slug, name=name or slug, text=text, current_version=1
    )
    SkillVersion.objects.create(
        skill=skill,
        number=1,
        text=text,
        diff=text_diff("", text, name=slug),
        change_kind=ChangeKind.CREATE,
        note="created",
        created_by=actor,
    )
    audit_event_record(
        namespace=namespace,
        actor=actor,
        action="skill_create",
        target_type="skill",
        target_id=slug,
        data={"version": 1, "hash": text_hash(text)},
    )
    return skill


def skill_lock(*, skill: Skill) -> Skill:
    return (
        Skill.objects.select_for_update().select_related("namespace").get(pk=skill.pk)
    )


def skill_version_commit(
    *,
    skill: Skill,
    text: str,
    change_kind: str,
    actor: str,
    note: str = "",
    candidate=None,
    allow_empty: bool = False,
) -> SkillVersion:
    """The next version of a locked skill with its unified diff and audit row."""
    if text == skill.text and not allow_empty:
        raise PlaybookError("Nothing changed.", field="text", code="no_change")
    number = (
        SkillVersion.objects.filter(skill=skill).aggregate(n=Max("number"))["n"] or 0
    ) + 1
    version = SkillVersion.objects.create(
        skill=skill,
        number=number,
        text=text,
        diff=text_diff(skill.text, text, name=skill.slug),
        change_kind=change_kind,
        note=note,
        created_by=actor,
        candidate=candidate,
    )
    before = text_hash(skill.text)
    skill.text = text
    skill.current_version = number
    skill.save(update_fields=["text", "current_version", "updated_at"])
    audit_event_record(
        namespace=skill.namespace,
        actor=actor,
        action=f"skill_{change_kind}",
        target_type="skill",
        target_id=skill.slug,
        candidate=candidate,
        note=note,
        data={"version": number, "from_hash": before, "to_hash": text_hash(text)},
    )
    return version


@transaction.atomic
def skill_update(
    *, skill: Skill, text: str, actor: str, note: str = ""
) -> SkillVersion:
    """A hand edit of a skill's text."""
    skill = skill_lock(skill=skill)
    return skill_version_commit(
        skill=skill, text=text, change_kind=ChangeKind.EDIT, actor=actor, note=note
    )


@transaction.atomic
def skill_rollback(*, skill: Skill, number: int, actor: str) -> SkillVersion:
    skill = skill_lock(skill=skill)
    target = SkillVersion.objects.filter(skill=skill, number=number).first()
    if target is None:
        raise PlaybookError(f"No version {number}.", field="version", code="not_found")
    return skill_version_commit(
        skill=skill,
        text=target.text,
        change_kind=ChangeKind.ROLLBACK,
        actor=actor,
        note=f"rolled back to version {number}",
        allow_empty=True,
    )


# --- memories and policy -----------------------------------------------------------


def memory_create(
    *,
    namespace: Namespace,
    kind: str,
    content: str,
    user_id: str = "",
    entity: str = "",
    importance: float = 0.5,
    scope: str = "",
    source_candidate=None,
) -> Memory:
    if not (content or "").strip():
        raise PlaybookError("A memory needs content.", field="content")
    return Memory.objects.create(
        namespace=namespace,
        kind=kind,
        content=content.strip(),
        user_id=user_id or "",
        entity=entity or "",
        importance=max(0.0, min(1.0, importance)),
        scope=scope or ("user" if user_id else "namespace"),
        source_candidate=source_candidate,
    )


def _clean_list(value, field: str) -> list[str]:
    if isinstance(value, str):
        value = [v for v in value.replace(",", "\n").splitlines()]
    if not isinstance(value, (list, tuple)):
        raise PlaybookError("A list of strings.", field=field)
    out = []
    for item in value:
        if not isinstance(item, str):
            raise PlaybookError("A list of strings.", field=field)
        item = item.strip()
        if item and item not in out:
            out.append(item)
    return out


@transaction.atomic
def policy_update(*, namespace: Namespace, actor: str, **changes: Any) -> HygienePolicy:
    """Edit the namespace's hygiene policy; the audit row carries the diff."""
    unknown = set(changes) - set(POLICY_FIELDS)
    if unknown:
        raise PlaybookError(
            f"Unknown field {sorted(unknown)[0]}.", field=sorted(unknown)[0]
        )
    cleaned = {k: _clean_list(v, k) for k, v in changes.items()}
    policy, _ = HygienePolicy.objects.select_for_update().get_or_create(
        namespace=namespace
    )
    diff = {}
    for key, value in cleaned.items():
        before = list(getattr(policy, key) or [])
        if before != value:
            diff[key] = {"from": before, "to": value}
            setattr(policy, key, value)
    policy.updated_by = actor
    policy.save()
    if diff:
        audit_event_record(
            namespace=namespace,
            actor=actor,
            action="policy_edit",
            target_type="policy",
            target_id=namespace.slug,
            data={"diff": diff},
        )
    return policy


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
