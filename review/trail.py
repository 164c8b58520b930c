"""The audit trail writer: one row per review action or change to curated knowledge.
Imports only models, so every stage can record what it did."""

from typing import Any

from review.models import AuditEvent


def audit_event_record(
    *,
    namespace,
    actor: str,
    action: str,
    target_type: str,
    target_id: Any,
    candidate=None,
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
