"""A slow webhook receiver holds no lock: ingest in its namespace goes on while a
delivery waits for it, and deliveries running at once (even the same one twice) are
each delivered or retried, never dropped."""

import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connections
from django_q.models import Schedule

from learning.models import DeliveryStatus, Trajectory, WebhookDelivery
from learning.webhooks import webhook_create, webhook_delivery_task, webhook_event_emit
from tests.factories import make_token

pytestmark = pytest.mark.django_db(transaction=True)


class SlowReceiver:
    """A local receiver that answers `status` after `delay` seconds and records
    which deliveries it got; `arrived` is set when the first request is in."""

    def __init__(self, delay: float, status: int = 200):
        self.delay, self.status = delay, status
        self.received: list[str] = []
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append(self.headers["X-Flywheel-Delivery"])
                receiver.arrived.set()
                time.sleep(receiver.delay)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def _local_receivers(settings, monkeypatch):
    settings.FLYWHEEL_WEBHOOK_ALLOW_PRIVATE = True  # the receivers are on loopback
    settings.FLYWHEEL_INGEST_RATE = "off"
    # The tests send deliveries themselves, from threads: emitting queues nothing
    # (Django-Q2's sync mode would send at once, on the emitting thread).
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kwargs: None)


def _in_thread(target, *args):
    """Run target(*args) on its own thread and database connection."""

    def run():
        try:
            target(*args)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _emit(namespace, n: int = 1) -> list[int]:
    ids = []
    for i in range(n):
        (delivery,) = webhook_event_emit(
            namespace=namespace, event="candidate.created", payload={"n": i}
        )
        ids.append(delivery.pk)
    return ids


def _post_run(base_url: str, token: str, external_id: str) -> tuple[int, float]:
    body = {
        "external_id": external_id,
        "task_description": "Change the flight of reservation 4WQ150",
        "status": "failure",
        "success_score": 0.0,
        "steps": [{"type": "message", "description": "user: change my flight"}],
    }
    request = urllib.request.Request(
        f"{base_url}/api/v1/runs/",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
        },
    )
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, time.perf_counter() - start


def test_a_slow_receiver_does_not_delay_ingest_in_its_namespace(live_server):
    """While a delivery waits 6 s for its receiver, POST /api/v1/runs/ in the same
    namespace answers at once (it waited for the delivery's lock on the namespace row
    before: 8 s in the issue); the delivery then completes."""
    token, raw = make_token(namespace="acme", role="agent", name="agent-slow")
    with SlowReceiver(delay=6) as receiver:
        webhook_create(namespace=token.namespace, url=receiver.url)
        (delivery_id,) = _emit(token.namespace)
        sender = _in_thread(webhook_delivery_task, delivery_id)
        assert receiver.arrived.wait(10), "the delivery never reached the receiver"
        status, seconds = _post_run(live_server.url, raw, "during-delivery")
        sender.join(30)
    assert status == 201
    assert seconds < 2, f"ingest waited {seconds:.1f} s for the webhook delivery"
    assert Trajectory.objects.filter(external_id="during-delivery").exists()
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 1)


def test_concurrent_deliveries_are_each_delivered_once():
    """8 deliveries of one namespace sent at once, each by two workers (a task queued
    twice): every one ends delivered after one attempt, and the receiver got each
    exactly once (none was skipped as 'missing', none sent twice)."""
    token, _raw = make_token(namespace="acme", role="agent", name="agent-many")
    with SlowReceiver(delay=0.5) as receiver:
        webhook_create(namespace=token.namespace, url=receiver.url)
        ids = _emit(token.namespace, 8)
        threads = [_in_thread(webhook_delivery_task, i) for i in ids + ids]
        for thread in threads:
            thread.join(30)
    deliveries = WebhookDelivery.objects.filter(pk__in=ids)
    assert {(d.status, d.attempts) for d in deliveries} == {
        (DeliveryStatus.DELIVERED, 1)
    }
    assert sorted(receiver.received) == sorted(str(d.event_id) for d in deliveries)


def test_concurrent_failures_are_each_retried_with_their_attempt_counted():
    """8 deliveries to a receiver answering 503, sent at once: each is `retrying`
    with one attempt counted and one retry scheduled; nothing is left pending."""
    token, _raw = make_token(namespace="acme", role="agent", name="agent-fail")
    with SlowReceiver(delay=0.3, status=503) as receiver:
        webhook_create(namespace=token.namespace, url=receiver.url)
        ids = _emit(token.namespace, 8)
        threads = [_in_thread(webhook_delivery_task, i) for i in ids]
        for thread in threads:
            thread.join(30)
    deliveries = list(WebhookDelivery.objects.filter(pk__in=ids))
    assert {(d.status, d.attempts, d.last_status_code) for d in deliveries} == {
        (DeliveryStatus.RETRYING, 1, 503)
    }
    assert len(receiver.received) == 8
    retries = Schedule.objects.filter(func="learning.webhooks.webhook_delivery_task")
    assert sorted(int(s.args.strip("(),")) for s in retries) == sorted(ids)
