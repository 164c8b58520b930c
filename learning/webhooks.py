"""Webhooks: signed event deliveries to URLs an admin registered, with retries.

Events: ``candidate.created``, ``candidate.decided``, ``candidate.applied``,
``version.flagged`` (the quality gate found a version worse), ``version.promoted`` and
``version.rolled_back`` (a rollout's canary became production, or was dropped); all
emitted by ``learning.events``. A delivery POSTs ``{"id", "event", "namespace",
"created_at", "data"}`` as JSON with these headers:

    X-Flywheel-Event: candidate.decided
    X-Flywheel-Delivery: <event id, the same on every retry>
    X-Flywheel-Signature: sha256=<hex HMAC-SHA256 of the raw body with the secret>

A receiver recomputes the HMAC over the raw body and compares in constant time.

A hook may only point at a public address: the host is resolved, and loopback,
private, link-local, reserved, multicast and unspecified addresses (in any spelling:
IPv6, IPv4-mapped, NAT64/6to4, decimal, octal, hex, ``localhost``) are refused when
the hook is registered and again at every delivery, which then connects to the very
address it checked (Host header and TLS name stay the hook's). Redirects are not
followed. ``FLYWHEEL_WEBHOOK_ALLOW_PRIVATE`` admits loopback and private receivers
(on premises); link-local (cloud metadata), multicast and unspecified never are.

Deliveries run on the Django-Q2 worker and hold no lock while they wait for the
receiver: an attempt is claimed with one conditional UPDATE (which counts it and
leases it for ``CLAIM_SECONDS``), sent outside any transaction, and its outcome
recorded. A failure (non-2xx, no answer) is retried with exponential backoff (30 s,
2 min, 8 min, …) up to WEBHOOK_MAX_ATTEMPTS. The log keeps the status code and a short
fixed reason, never what the receiver sent back.
"""

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import secrets
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from learning.events import (  # noqa: F401 - re-exported for the callers of old
    DELIVERY_TASK,
    WEBHOOK_EVENTS,
    candidate_event_emit,
    candidate_event_payload,
    delivery_enqueue,
    version_flagged_emit,
    webhook_event_emit,
)
from learning.models import DeliveryStatus, Namespace, Webhook, WebhookDelivery

logger = logging.getLogger(__name__)

WEBHOOK_MAX_ATTEMPTS = 6
WEBHOOK_BACKOFF_SECONDS = 30
# The whole attempt (connect, send, read the status line) must end in this time.
WEBHOOK_TIMEOUT_SECONDS = 10
# A claimed attempt that never recorded its outcome (its worker died) can be claimed
# again after this; longer than any attempt.
CLAIM_SECONDS = 60
SIGNATURE_HEADER = "X-Flywheel-Signature"

# What the delivery log says; fixed phrases, so it never echoes a receiver and a
# refused port looks like a silent one (no port scanning through the log).
REASON_NO_RESPONSE = "no response (connection failed, TLS failed or timed out)"
REASON_NOT_PUBLIC = "refused: the receiver's host is not a public address"
REASON_UNRESOLVED = "refused: the receiver's host name does not resolve"
# While an attempt is out (claimed, not yet recorded); stale after CLAIM_SECONDS.
REASON_IN_FLIGHT = "being sent"


def webhook_signature(*, secret: str, body: bytes) -> str:
    """The signature header value for a body: ``sha256=<hex digest>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_signature_verify(*, secret: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(
        webhook_signature(secret=secret, body=body), signature or ""
    )


# --- which addresses a hook may reach ----------------------------------------------

# IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64).
_NAT64 = (
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
)
# Shared address space (carrier-grade NAT): not routable from outside, like private.
_SHARED = ipaddress.ip_network("100.64.0.0/10")


class AddressRefused(ValueError):
    """The hook's host is, or resolves to, an address it may not reach."""


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_allowed(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_private: bool
) -> bool:
    """Whether a hook may connect to `address`: a public unicast address; with
    `allow_private` also loopback and private ones (never link-local, multicast,
    unspecified or reserved)."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            return address_allowed(inner, allow_private=allow_private)
    if (
        address.is_unspecified
        or address.is_multicast
        or address.is_link_local
        or address.is_reserved
    ):
        return False
    if address.is_global and address not in _SHARED:
        return True
    private = address.is_loopback or address.is_private or address in _SHARED
    return allow_private and private


def _allow_private() -> bool:
    return bool(getattr(settings, "FLYWHEEL_WEBHOOK_ALLOW_PRIVATE", False))


def webhook_addresses(host: str, port: int) -> list[str]:
    """Resolve a hook's host to the addresses a delivery may connect to; raise
    AddressRefused when it resolves to nothing, or to any address the hook may not
    reach (a name that answers one public and one internal address is refused)."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        raise AddressRefused(REASON_NOT_PUBLIC)
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise AddressRefused(REASON_UNRESOLVED) from exc
    addresses: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if not address_allowed(address, allow_private=_allow_private()):
            raise AddressRefused(REASON_NOT_PUBLIC)
        if str(address) not in addresses:
            addresses.append(str(address))
    if not addresses:
        raise AddressRefused(REASON_UNRESOLVED)
    return addresses


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written in the URL (the Host header and the TLS name)
    port: int
    path: str  # with the query


def webhook_target(url: str) -> Target:
    """The parts of a hook URL a delivery needs (ValueError if it has none)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, port, path)


def webhook_url_check(url: str) -> None:
    """Raise ValidationError({"url": …}) unless a hook may be registered for `url`:
    an http(s) URL whose host is not, and does not resolve to, an internal address.
    A name that does not resolve yet is accepted; every delivery checks again."""
    try:
        URLValidator(schemes=["http", "https"])(url)
        target = webhook_target(url)
    except (ValidationError, ValueError):
        raise ValidationError({"url": ["Enter a valid http(s) URL."]}) from None
    try:
        webhook_addresses(target.host, target.port)
    except AddressRefused as exc:
        if str(exc) == REASON_UNRESOLVED and not _is_ip_literal(target.host):
            return
        raise ValidationError(
            {
                "url": [
                    "The host is not a public address (loopback, private, link-local, "
                    "reserved, multicast and unspecified addresses are refused; "
                    "FLYWHEEL_WEBHOOK_ALLOW_PRIVATE admits private receivers)."
                ]
            }
        ) from None


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


# --- registration -------------------------------------------------------------------


def _validated(url: str, events: list[str] | None) -> list[str]:
    errors: dict[str, list[str]] = {}
    try:
        webhook_url_check(url)
    except ValidationError as exc:
        errors.update(exc.message_dict)
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


# --- sending ------------------------------------------------------------------------


def _body(delivery: WebhookDelivery, namespace_slug: str) -> bytes:
    envelope = {
        "id": str(delivery.event_id),
        "event": delivery.event,
        "namespace": namespace_slug,
        "created_at": delivery.created_at.isoformat(),
        "data": delivery.payload,
    }
    return json.dumps(envelope, sort_keys=True).encode()


def _connection(target: Target, address: str, timeout: float):
    """An HTTP(S) connection to `address` that speaks to `target.host`: the Host
    header, the TLS server name and the certificate check use the name, the socket
    goes to the address that was checked (no second lookup)."""
    if target.scheme == "https":
        conn = http.client.HTTPSConnection(
            target.host,
            target.port,
            timeout=timeout,
            context=ssl.create_default_context(),
        )
    else:
        conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)

    def connect_pinned(_address, timeout=timeout, source_address=None):
        return socket.create_connection((address, target.port), timeout, source_address)

    conn._create_connection = connect_pinned
    return conn


def webhook_post(
    url: str, body: bytes, headers: dict[str, str]
) -> tuple[int | None, str]:
    """POST once to a hook: (status code or None, fixed reason or ""). Checks the
    address, connects to it, follows no redirect, reads only the status line and
    headers, and gives up after WEBHOOK_TIMEOUT_SECONDS in all."""
    try:
        target = webhook_target(url)
        addresses = webhook_addresses(target.host, target.port)
    except ValueError as exc:  # AddressRefused, or a URL changed into nonsense
        return None, str(exc) if isinstance(exc, AddressRefused) else REASON_NOT_PUBLIC
    conn = _connection(target, addresses[0], WEBHOOK_TIMEOUT_SECONDS)
    # A receiver that trickles its answer byte by byte is cut off at the deadline.
    watchdog = threading.Timer(WEBHOOK_TIMEOUT_SECONDS, _abort, args=(conn,))
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request("POST", target.path, body=body, headers=headers)
        response = conn.getresponse()
        status = response.status
    except (OSError, http.client.HTTPException, ValueError):
        return None, REASON_NO_RESPONSE
    finally:
        watchdog.cancel()
        conn.close()
    return status, "" if 200 <= status < 300 else f"HTTP {status}"


def _abort(conn) -> None:
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


# --- one attempt: claim, send outside any transaction, record -----------------------


def webhook_backoff(*, attempts: int) -> timedelta:
    """The wait after the n-th failed attempt: 30 s × 4^(n-1)."""
    return timedelta(seconds=WEBHOOK_BACKOFF_SECONDS * 4 ** max(0, attempts - 1))


def _claim(delivery_id: int) -> WebhookDelivery | None:
    """Take the next attempt of a delivery, or None if it is settled or another
    worker is sending it. One conditional UPDATE: it counts the attempt and marks it
    in flight until now + CLAIM_SECONDS (then a worker that died is replaced); no
    lock outlives the statement."""
    now = timezone.now()
    claimed = (
        WebhookDelivery.objects.filter(
            pk=delivery_id,
            status__in=(DeliveryStatus.PENDING, DeliveryStatus.RETRYING),
            attempts__lt=WEBHOOK_MAX_ATTEMPTS,
        )
        .exclude(last_error=REASON_IN_FLIGHT, next_attempt_at__gt=now)
        .update(
            attempts=F("attempts") + 1,
            last_error=REASON_IN_FLIGHT,
            next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS),
            updated_at=now,
        )
    )
    if not claimed:
        return None
    return (
        WebhookDelivery.objects.select_related("webhook__namespace")
        .filter(pk=delivery_id)
        .first()
    )


def _record(delivery: WebhookDelivery, status_code: int | None, error: str) -> None:
    """Store the outcome of the claimed attempt (unless the claim was lost: a newer
    attempt or a redelivery replaced it) and schedule the retry."""
    now = timezone.now()
    delivery.last_status_code = status_code
    if status_code is not None and 200 <= status_code < 300:
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = now
        delivery.last_error = ""
        delivery.next_attempt_at = None
    else:
        delivery.last_error = (error or f"HTTP {status_code}")[:200]
        if delivery.attempts >= WEBHOOK_MAX_ATTEMPTS:
            delivery.status = DeliveryStatus.FAILED
            delivery.next_attempt_at = None
        else:
            delivery.status = DeliveryStatus.RETRYING
            delivery.next_attempt_at = now + webhook_backoff(attempts=delivery.attempts)
    fields = ["status", "last_status_code", "last_error", "next_attempt_at"]
    fields += ["delivered_at", "updated_at"]
    kept = WebhookDelivery.objects.filter(
        pk=delivery.pk, attempts=delivery.attempts, last_error=REASON_IN_FLIGHT
    ).update(
        status=delivery.status,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        next_attempt_at=delivery.next_attempt_at,
        delivered_at=delivery.delivered_at,
        updated_at=now,
    )
    if kept and delivery.status == DeliveryStatus.RETRYING:
        _retry_schedule(delivery.pk, delivery.next_attempt_at)


def webhook_delivery_attempt(*, delivery_id: int) -> WebhookDelivery | None:
    """Send one delivery once; record the outcome; schedule a retry on failure. A
    delivery that is settled, or being sent by another worker, is returned as it is.

    Call it outside a transaction (the worker does): the claim commits at once and
    nothing is locked while the receiver takes its time."""
    delivery = _claim(delivery_id)
    if delivery is None:
        return WebhookDelivery.objects.filter(pk=delivery_id).first()
    hook = delivery.webhook
    body = _body(delivery, hook.namespace.slug)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Flywheel-Webhooks/1",
        "X-Flywheel-Event": delivery.event,
        "X-Flywheel-Delivery": str(delivery.event_id),
        SIGNATURE_HEADER: webhook_signature(secret=hook.secret, body=body),
    }
    started = time.monotonic()
    status_code, error = webhook_post(hook.url, body, headers)
    _record(delivery, status_code, error)
    if delivery.status != DeliveryStatus.DELIVERED:
        logger.warning(
            "webhook delivery %s to hook %s failed (attempt %s, %.1f s): %s",
            delivery.pk,
            hook.pk,
            delivery.attempts,
            time.monotonic() - started,
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
        status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=None, last_error=""
    )
    transaction.on_commit(lambda: delivery_enqueue(delivery.pk))
    delivery.refresh_from_db()
    return delivery
