"""Memories: preferences and durable facts per user or namespace."""

from typing import Any

from django.db import transaction

from learning.limits import MAX_LESSON_TEXT
from learning.models import Namespace
from playbooks.models import Memory, MemoryKind
from playbooks.versions import PlaybookError
from review.trail import audit_event_record


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


MEMORY_EDITABLE = ("content", "importance", "entity", "user_id", "kind")


def _memory_changes_clean(changes: dict) -> dict:
    unknown = set(changes) - set(MEMORY_EDITABLE)
    if unknown:
        field = sorted(unknown)[0]
        raise PlaybookError(f"Unknown field {field}.", field=field)
    changes = {k: v.strip() if isinstance(v, str) else v for k, v in changes.items()}
    if "content" in changes:
        if not changes["content"]:
            raise PlaybookError("A memory needs content.", field="content")
        if len(changes["content"]) > MAX_LESSON_TEXT:
            raise PlaybookError(
                f"At most {MAX_LESSON_TEXT} characters.", field="content"
            )
    value = changes.get("importance", 0.5)
    if not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise PlaybookError("A number from 0 to 1.", field="importance")
    if "kind" in changes and changes["kind"] not in MemoryKind.values:
        raise PlaybookError(f"One of {MemoryKind.values}.", field="kind")
    return changes


@transaction.atomic
def memory_update(
    *, memory: Memory, actor: str, note: str = "", **changes: Any
) -> Memory:
    """Edit an active memory by hand (text, importance, entity, user, kind), recorded
    as a `memory_edit` audit event with before/after."""
    changes = _memory_changes_clean(changes)
    memory = Memory.objects.select_for_update().get(pk=memory.pk)
    if not memory.active:
        raise PlaybookError("This memory is retired.", field="id")
    before, after = {}, {}
    for field, value in changes.items():
        if getattr(memory, field) != value:
            before[field], after[field] = getattr(memory, field), value
            setattr(memory, field, value)
    if "user_id" in after:
        memory.scope = "user" if memory.user_id else "namespace"
    if not after:
        return memory
    memory.save()
    audit_event_record(
        namespace=memory.namespace,
        actor=actor,
        action="memory_edit",
        target_type="memory",
        target_id=memory.pk,
        note=note,
        data={"before": before, "after": after},
    )
    return memory


@transaction.atomic
def memory_retire(*, memory: Memory, actor: str, note: str = "") -> Memory:
    """Retire a memory: recall no longer hands it out; its history stays."""
    memory = Memory.objects.select_for_update().get(pk=memory.pk)
    if not memory.active:
        raise PlaybookError("This memory is already retired.", field="id")
    memory.active = False
    memory.save(update_fields=["active", "updated_at"])
    audit_event_record(
        namespace=memory.namespace,
        actor=actor,
        action="memory_retire",
        target_type="memory",
        target_id=memory.pk,
        note=note,
        data={"content": memory.content},
    )
    return memory
