"""Events for webhooks: record one delivery per subscribed hook and queue it on commit.

This is the part services call (``candidate_event_emit``, ``version_flagged_emit``, …);
it imports only models, Django and Django-Q2, so any service can use it. Registering
hooks, signing, address checks and the delivery itself live in ``learning.webhooks``.
"""

import json
from typing import Any

from django.db import transaction

from learning.models import Namespace, Webhook, WebhookDelivery

# A leaf module (it imports nothing of the project): masking the payload here keeps
# secrets out of the delivery log.
from learning.services.redaction import redact_value

WEBHOOK_EVENTS = (
    "candidate.created",
    "candidate.decided",
    "candidate.applied",
    "version.flagged",
    "version.promoted",
    "version.rolled_back",
)
# The Django-Q2 task that sends one delivery, by name (no import of the sender).
DELIVERY_TASK = "learning.webhooks.webhook_delivery_task"


def delivery_enqueue(delivery_id: int) -> None:
    """Queue one delivery for the worker now."""
    from learning.queue import task_send

    task_send(DELIVERY_TASK, delivery_id, task_name=f"webhook-{delivery_id}")


def webhook_event_emit(
    *, namespace: Namespace, event: str, payload: dict[str, Any]
) -> list[WebhookDelivery]:
    """Record one delivery per subscribed webhook and enqueue them when the caller's
    transaction commits (nothing is sent for a rolled-back change)."""
    return webhook_events_emit(namespace=namespace, events=[(event, payload)])


def webhook_events_emit(
    *, namespace: Namespace, events: list[tuple[str, dict[str, Any]]]
) -> list[WebhookDelivery]:
    """`webhook_event_emit` for several events of one action at once, in order (an
    approval: decided, then applied): the namespace's webhooks are read once."""
    for event, _ in events:
        if event not in WEBHOOK_EVENTS:
            raise ValueError(f"unknown webhook event {event!r}")
    active = list(Webhook.objects.filter(namespace=namespace, active=True))
    rows = []
    for event, payload in events:
        hooks = [hook for hook in active if not hook.events or event in hook.events]
        if not hooks:
            continue
        # Stored as sent; content from runs was redacted on ingest, mask again
        # regardless.
        data = redact_value(json.loads(json.dumps(payload, default=str)))[0]
        rows += [
            WebhookDelivery(webhook=hook, event=event, payload=data) for hook in hooks
        ]
    if not rows:
        return []
    deliveries = WebhookDelivery.objects.bulk_create(rows)
    ids = [d.pk for d in deliveries]

    def enqueue():
        for delivery_id in ids:
            delivery_enqueue(delivery_id)

    transaction.on_commit(enqueue)
    return deliveries


# --- payloads the call sites send ---------------------------------------------------


def candidate_event_payload(candidate) -> dict[str, Any]:
    """What a candidate event carries (ids and decision, never run content)."""
    return {
        "candidate": {
            "id": candidate.pk,
            "kind": candidate.kind,
            "status": candidate.status,
            "content": candidate.content,
            "confidence": candidate.confidence,
            "playbook": getattr(candidate.playbook, "slug", None),
            "decided_by": candidate.decided_by,
            "decision_note": candidate.decision_note,
            "applied_version": candidate.applied_version,
            "source": candidate.source,
        }
    }


def candidate_event_emit(*, candidate, event: str) -> None:
    """One-line hook for the candidate state machine's call sites."""
    webhook_event_emit(
        namespace=candidate.namespace,
        event=event,
        payload=candidate_event_payload(candidate),
    )


def version_flagged_emit(*, playbook, version) -> None:
    """One-line hook for the quality gate: a version was flagged as doing worse."""
    webhook_event_emit(
        namespace=playbook.namespace,
        event="version.flagged",
        payload={
            "playbook": playbook.slug,
            "version": version.number,
            "reason": version.flag_reason,
        },
    )


def version_promoted_emit(
    *, playbook, version: int, previous: int, by: str, reason: str, verdict: dict
) -> None:
    """One-line hook for a rollout: the canary `version` became production."""
    webhook_event_emit(
        namespace=playbook.namespace,
        event="version.promoted",
        payload={
            "playbook": playbook.slug,
            "version": version,
            "previous": previous,
            "by": by,
            "reason": reason,
            "verdict": verdict,
        },
    )


def version_rolled_back_emit(
    *, playbook, version: int, production: int, by: str, reason: str, verdict: dict
) -> None:
    """One-line hook for a rollout: the canary `version` was dropped; `production`
    still serves."""
    webhook_event_emit(
        namespace=playbook.namespace,
        event="version.rolled_back",
        payload={
            "playbook": playbook.slug,
            "version": version,
            "production": production,
            "by": by,
            "reason": reason,
            "verdict": verdict,
        },
    )
