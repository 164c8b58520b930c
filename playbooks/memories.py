"""Memories: preferences and durable facts per user or namespace."""

from learning.models import Namespace
from playbooks.models import (
    Memory,
)
from playbooks.versions import PlaybookError


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
