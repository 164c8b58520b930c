"""Webhooks: signed event deliveries to URLs an admin registered, with retries.

Events: ``candidate.created``, ``candidate.decided``, ``candidate.applied``,
``version.flagged`` (the quality gate found a canary worse), ``version.promoted`` and
``version.rolled_back`` (a rollout's canary became production, or was dropped). A delivery POSTs ``{"id", "event", "namespace", "created_at",
"data"}`` as JSON with these headers:

    X-Flywheel-Event: candidate.decided
    X-Flywheel-Delivery: <event id, the same on every retry>
    X-Flywheel-Signature: sha256=<hex HMAC-SHA256 of the raw body with the secret>

A receiver recomputes the HMAC over the raw body and compares in constant time.
Deliveries run on the Django-Q2 worker; a failure (non-2xx, timeout, refused) is
retried with exponential backoff (30 s, 2 min, 8 min, …) up to WEBHOOK_MAX_ATTEMPTS,
each attempt recorded on the WebhookDelivery row (the delivery log).
"""

import hashlib
import hmac
import json
import logging
import secrets
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.utils import timezone

from learning.models import DeliveryStatus, Namespace, Webhook, WebhookDelivery
from learning.services.redaction import redact_value

logger = logging.getLogger(__name__)

WEBHOOK_EVENTS = (
    "candidate.created",
    "candidate.decided",
    "candidate.applied",
    "version.flagged",
    "version.promoted",
    "version.rolled_back",
)
WEBHOOK_MAX_ATTEMPTS = 6
WEBHOOK_BACKOFF_SECONDS = 30
WEBHOOK_TIMEOUT_SECONDS = 10
DELIVERY_TASK = "learning.webhooks.webhook_delivery_task"
SIGNATURE_HEADER = "X-Flywheel-Signature"


def webhook_signature(*, secret: str, body: bytes) -> str:
    """The signature header value for a body: ``sha256=<hex digest>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_signature_verify(*, secret: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(
        webhook_signature(secret=secret, body=body), signature or ""
    )


def _validated(url: str, events: list[str] | None) -> list[str]:
    errors: dict[str, list[str]] = {}
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        errors["url"] = ["Enter a valid http(s) URL."]
    events = list(events or [])
    unknown = [e for e in events if e not in WEBHOOK_EVENTS]
    if unknown:
        errors["events"] = [
            f"Unknown event(s) {', '.join(map(str, unknown))}; use {', '.join(WEBHOOK_EVENTS)}."
        ]
    if errors:
        raise ValidationError(errors)
    return events


def webhook_create(
    *,
    namespace: Namespace,
    url: str,
    events: list[str] | None = None,
    description: str = "",
    created_by: str = "",
    secret: str | None = None,
) -> Webhook:
    """Register a URL for a namespace's events (empty ``events``: all of them)."""
    events = _validated(url, events)
    return Webhook.objects.create(
        namespace=namespace,
        url=url,
        events=events,
        description=description,
        created_by=created_by,
        secret=secret or "whsec_" + secrets.token_urlsafe(32),
    )


def webhook_event_emit(
    *, namespace: Namespace, event: str, payload: dict[str, Any]
) -> list[WebhookDelivery]:
    """Record one delivery per subscribed webhook and enqueue them when the caller's
    transaction commits (nothing is sent for a rolled-back change)."""
    if event not in WEBHOOK_EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    hooks = [
        hook
        for hook in Webhook.objects.filter(namespace=namespace, active=True)
        if not hook.events or event in hook.events
    ]
    if not hooks:
        return []
    # Stored as sent; content from runs was redacted on ingest, mask again regardless.
    data = redact_value(json.loads(json.dumps(payload, default=str)))[0]
    deliveries = WebhookDelivery.objects.bulk_create(
        [WebhookDelivery(webhook=hook, event=event, payload=data) for hook in hooks]
    )
    ids = [d.pk for d in deliveries]

    def enqueue():
        from django_q.tasks import async_task

        for delivery_id in ids:
            async_task(DELIVERY_TASK, delivery_id, task_name=f"webhook-{delivery_id}")

    transaction.on_commit(enqueue)
    return deliveries


def _body(delivery: WebhookDelivery) -> bytes:
    envelope = {
        "id": str(delivery.event_id),
        "event": delivery.event,
        "namespace": delivery.webhook.namespace.slug,
        "created_at": delivery.created_at.isoformat(),
        "data": delivery.payload,
    }
    return json.dumps(envelope, sort_keys=True).encode()


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(
            request, timeout=WEBHOOK_TIMEOUT_SECONDS
        ) as response:
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(500).decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        return None, str(getattr(exc, "reason", exc))


def webhook_backoff(*, attempts: int) -> timedelta:
    """The wait after the n-th failed attempt: 30 s × 4^(n-1)."""
    return timedelta(seconds=WEBHOOK_BACKOFF_SECONDS * 4 ** max(0, attempts - 1))


def webhook_delivery_attempt(*, delivery_id: int) -> WebhookDelivery | None:
    """Send one delivery once; record the outcome; schedule a retry on failure."""
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .select_related("webhook__namespace")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None or delivery.status in (
            DeliveryStatus.DELIVERED,
            DeliveryStatus.FAILED,
        ):
            return delivery  # gone, being sent by another worker, or settled
        hook = delivery.webhook
        body = _body(delivery)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Flywheel-Webhooks/1",
            "X-Flywheel-Event": delivery.event,
            "X-Flywheel-Delivery": str(delivery.event_id),
            SIGNATURE_HEADER: webhook_signature(secret=hook.secret, body=body),
        }
        status_code, error = _post(hook.url, body, headers)
        delivery.attempts += 1
        delivery.last_status_code = status_code
        now = timezone.now()
        if status_code is not None and 200 <= status_code < 300:
            delivery.status = DeliveryStatus.DELIVERED
            delivery.delivered_at = now
            delivery.last_error = ""
            delivery.next_attempt_at = None
        else:
            delivery.last_error = (error or f"HTTP {status_code}")[:2000]
            if delivery.attempts >= WEBHOOK_MAX_ATTEMPTS:
                delivery.status = DeliveryStatus.FAILED
                delivery.next_attempt_at = None
            else:
                delivery.status = DeliveryStatus.RETRYING
                delivery.next_attempt_at = now + webhook_backoff(
                    attempts=delivery.attempts
                )
        delivery.save()
        if delivery.status == DeliveryStatus.RETRYING:
            next_run = delivery.next_attempt_at
            transaction.on_commit(lambda: _retry_schedule(delivery.pk, next_run))
    if delivery.status != DeliveryStatus.DELIVERED:
        logger.warning(
            "webhook delivery %s to %s failed (attempt %s): %s",
            delivery.pk,
            hook.url,
            delivery.attempts,
            delivery.last_error,
        )
    return delivery


def _retry_schedule(delivery_id: int, next_run) -> None:
    from django_q.models import Schedule
    from django_q.tasks import schedule

    # A one-off schedule: the worker runs it at next_run, then deletes it.
    schedule(
        DELIVERY_TASK,
        delivery_id,
        name=f"webhook-retry-{delivery_id}-{next_run.timestamp():.0f}",
        schedule_type=Schedule.ONCE,
        repeats=-1,
        next_run=next_run,
    )


def webhook_delivery_task(delivery_id: int) -> str:
    """Django-Q2 task: thin caller of webhook_delivery_attempt."""
    delivery = webhook_delivery_attempt(delivery_id=delivery_id)
    return delivery.status if delivery else "missing"


def webhook_delivery_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a failed (or delivered) event again, as a fresh series of attempts."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=None
    )
    transaction.on_commit(lambda: _enqueue_now(delivery.pk))
    delivery.refresh_from_db()
    return delivery


def _enqueue_now(delivery_id: int) -> None:
    from django_q.tasks import async_task

    async_task(DELIVERY_TASK, delivery_id, task_name=f"webhook-{delivery_id}")


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
