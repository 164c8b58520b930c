"""Exports and webhooks over real HTTP against a live server."""

import json
import urllib.request

import pytest
from flywheel_client import Flywheel

from learning.models import WebhookDelivery
from learning.webhooks import webhook_signature
from tests.ecosystem.fakes import Recorder
from tests.factories import CandidateFactory, make_token

pytestmark = pytest.mark.django_db(transaction=True)


def test_export_streams_jsonl_over_http(live_server):
    """Runs recorded through the client come back as a streamed JSONL export."""
    _agent, agent_raw = make_token(namespace="acme", role="agent", name="agent")
    _rev, reviewer_raw = make_token(namespace="acme", role="reviewer", name="rev")
    fw = Flywheel(live_server.url, agent_raw)
    for score in (1.0, 0.0):
        with fw.run(
            "Change the flight of 4WQ150", task_type="airline.change_flight"
        ) as run:
            run.message("user", "change it please")
            run.tool_call(
                "change_flight", {"reservation_id": "4WQ150"}, {"ok": score > 0}
            )
            if score:
                run.succeed(score)
            else:
                run.fail("refused")
    request = urllib.request.Request(
        f"{live_server.url}/api/v1/exports/preferences/",
        headers={"Authorization": f"Bearer {reviewer_raw}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"] == "application/x-ndjson"
        lines = response.read().decode().splitlines()
    (pair,) = [json.loads(line) for line in lines]
    assert pair["metadata"]["chosen"]["status"] == "success"
    assert pair["metadata"]["rejected"]["status"] == "failure"
    assert pair["chosen"][-1]["role"] == "tool"


def test_a_denial_through_the_api_is_delivered_to_the_hook(live_server, settings):
    """An admin registers a hook over HTTP; a reviewer's deny through the API makes the
    worker POST a signed candidate.decided event to it."""
    settings.FLYWHEEL_WEBHOOK_ALLOW_PRIVATE = True  # the receiver is on loopback
    admin_token, admin_raw = make_token(namespace="acme", role="admin", name="admin")
    _rev, reviewer_raw = make_token(namespace="acme", role="reviewer", name="rev")
    admin = Flywheel(live_server.url, admin_raw)
    reviewer = Flywheel(live_server.url, reviewer_raw)
    candidate = CandidateFactory(namespace=admin_token.namespace)
    with Recorder() as receiver:
        hook = admin.request("POST", "webhooks/", json_body={"url": receiver.url})
        reviewer.request(
            "POST",
            f"candidates/{candidate.pk}/deny/",
            json_body={"note": "duplicate of an applied strategy"},
        )
    (delivery,) = receiver.requests
    assert delivery["headers"]["X-Flywheel-Signature"] == webhook_signature(
        secret=hook["secret"], body=delivery["body"]
    )
    event = json.loads(delivery["body"])
    assert event["event"] == "candidate.decided"
    assert event["data"]["candidate"]["decided_by"] == "token:rev"
    assert WebhookDelivery.objects.get().status == "delivered"
