"""Webhooks: signed deliveries on candidate and version events, retried with backoff."""

import ast
import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import Schedule

from learning.models import DeliveryStatus, Webhook, WebhookDelivery
from learning.webhooks import (
    WEBHOOK_MAX_ATTEMPTS,
    webhook_create,
    webhook_delivery_task,
    webhook_event_emit,
    webhook_signature,
)
from review.services import Actor, candidate_deny
from tests.ecosystem.fakes import Recorder
from tests.factories import CandidateFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local_receivers(settings):
    """The receivers here are on loopback: allowed as for an on-premises receiver
    (tests/security/test_webhook_ssrf.py keeps the default)."""
    settings.FLYWHEEL_WEBHOOK_ALLOW_PRIVATE = True


def test_admin_registers_a_hook_and_a_denial_is_delivered_signed(
    admin_client_api, django_capture_on_commit_callbacks
):
    """A hook registered through the API (secret shown once) receives the
    candidate.decided event of a denial, POSTed with an HMAC-SHA256 signature of the
    body; the delivery log records it as delivered."""
    with Recorder() as receiver:
        created = admin_client_api.post_json(
            "/api/v1/webhooks/",
            {"url": f"{receiver.url}/hook", "events": ["candidate.decided"]},
        )
        assert created.status_code == 201, created.json()
        secret = created.json()["secret"]
        assert secret.startswith("whsec_")
        listed = admin_client_api.get("/api/v1/webhooks/").json()["results"]
        assert "secret" not in listed[0]

        candidate = CandidateFactory(namespace=admin_client_api.namespace)
        with django_capture_on_commit_callbacks(execute=True):
            candidate_deny(
                namespace=candidate.namespace,
                candidate_id=candidate.pk,
                actor=Actor("rev"),
                note="too vague",
            )
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request["path"] == "/hook"
    assert request["headers"]["X-Flywheel-Signature"] == webhook_signature(
        secret=secret, body=request["body"]
    )
    body = json.loads(request["body"])
    assert (
        body["event"] == request["headers"]["X-Flywheel-Event"] == "candidate.decided"
    )
    assert body["namespace"] == "acme"
    assert body["data"]["candidate"]["id"] == candidate.pk
    assert body["data"]["candidate"]["status"] == "denied"
    assert body["data"]["candidate"]["decision_note"] == "too vague"

    log = admin_client_api.get(
        f"/api/v1/webhooks/{created.json()['id']}/deliveries/"
    ).json()
    assert [
        (d["event"], d["status"], d["attempts"], d["last_status_code"])
        for d in log["results"]
    ] == [("candidate.decided", "delivered", 1, 200)]


def test_failed_delivery_is_retried_with_exponential_backoff(
    django_capture_on_commit_callbacks, admin_client_api
):
    """A 500 leaves the delivery `retrying` with a one-off Django-Q2 schedule at the
    backoff time; the worker running it delivers; after the last attempt it is `failed`."""
    namespace = admin_client_api.namespace
    with Recorder([(500, {}, {"error": "down"}), (200, {}, {})]) as receiver:
        hook = webhook_create(namespace=namespace, url=receiver.url)
        with django_capture_on_commit_callbacks(execute=True):
            webhook_event_emit(
                namespace=namespace,
                event="version.flagged",
                payload={"playbook": "airline", "version": 4},
            )
        delivery = WebhookDelivery.objects.get(webhook=hook)
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
            DeliveryStatus.RETRYING,
            1,
            500,
        )
        expected = timezone.now() + timedelta(seconds=30)
        assert abs((delivery.next_attempt_at - expected).total_seconds()) < 5
        retry = Schedule.objects.get(func="learning.webhooks.webhook_delivery_task")
        assert (
            retry.schedule_type == Schedule.ONCE
            and retry.next_run == delivery.next_attempt_at
        )
        assert (
            webhook_delivery_task(*ast.literal_eval(retry.args))
            == DeliveryStatus.DELIVERED
        )  # the worker
        assert [r["headers"]["X-Flywheel-Delivery"] for r in receiver.requests] == [
            str(delivery.event_id)
        ] * 2

    with Recorder([(503, {}, {})] * WEBHOOK_MAX_ATTEMPTS) as receiver:
        hook.url = receiver.url
        hook.save()
        with django_capture_on_commit_callbacks(execute=True):
            (failing,) = webhook_event_emit(
                namespace=namespace, event="candidate.created", payload={}
            )
        gaps = []
        for _ in range(WEBHOOK_MAX_ATTEMPTS - 1):
            failing.refresh_from_db()
            gaps.append(failing.next_attempt_at - failing.updated_at)
            with django_capture_on_commit_callbacks(execute=True):
                webhook_delivery_task(failing.pk)
        failing.refresh_from_db()
        assert failing.status == DeliveryStatus.FAILED
        assert failing.attempts == WEBHOOK_MAX_ATTEMPTS
        assert [round(g.total_seconds() / 30) for g in gaps] == [1, 4, 16, 64, 256]
        assert len(receiver.requests) == WEBHOOK_MAX_ATTEMPTS


def test_only_subscribed_events_and_committed_changes_are_delivered(
    django_capture_on_commit_callbacks, admin_client_api
):
    """A hook gets only the events it subscribed to, and nothing from a transaction
    that rolled back; other namespaces' hooks get nothing."""
    namespace = admin_client_api.namespace
    with Recorder() as receiver:
        applied_only = webhook_create(
            namespace=namespace, url=receiver.url, events=["candidate.applied"]
        )
        webhook_create(namespace=CandidateFactory().namespace, url=receiver.url)
        with django_capture_on_commit_callbacks(execute=True):
            assert (
                webhook_event_emit(
                    namespace=namespace, event="candidate.decided", payload={}
                )
                == []
            )
            try:
                with transaction.atomic():
                    webhook_event_emit(
                        namespace=namespace, event="candidate.applied", payload={"n": 1}
                    )
                    raise RuntimeError("rolled back")
            except RuntimeError:
                pass
    assert receiver.requests == []
    assert not WebhookDelivery.objects.filter(webhook=applied_only).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "not a url"}, "url"),
        ({"url": "https://x.test/h", "events": ["nope"]}, "events"),
    ],
)
def test_bad_registrations_name_the_field(admin_client_api, body, field):
    response = admin_client_api.post_json("/api/v1/webhooks/", body)
    assert response.status_code == 400
    assert field in response.json()


def test_webhooks_need_an_admin_token_and_stay_in_their_namespace(
    agent_client, admin_client_api, other_client, django_assert_num_queries
):
    """Agents can't manage hooks; another namespace gets 404; the delivery log is
    read in a fixed number of queries."""
    assert agent_client.get("/api/v1/webhooks/").status_code == 403
    hook = webhook_create(namespace=admin_client_api.namespace, url="https://x.test/h")
    webhook_create(namespace=admin_client_api.namespace, url="https://y.test/h")
    with django_assert_num_queries(4):  # token, last_used, count, page
        listed = admin_client_api.get("/api/v1/webhooks/").json()
    assert [h["url"] for h in listed["results"]] == [
        "https://x.test/h",
        "https://y.test/h",
    ]
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(webhook=hook, event="candidate.created", payload={"i": i})
            for i in range(3)
        ]
    )
    assert (
        other_client.get(f"/api/v1/webhooks/{hook.pk}/deliveries/").status_code == 404
    )
    with django_assert_num_queries(
        4
    ):  # token (last_used_at already fresh), hook, count, page
        response = admin_client_api.get(f"/api/v1/webhooks/{hook.pk}/deliveries/")
    assert response.json()["count"] == 3
    assert admin_client_api.delete(f"/api/v1/webhooks/{hook.pk}/").status_code == 204
    assert not Webhook.objects.filter(pk=hook.pk).exists()


def test_django_admin_registers_a_hook_with_a_generated_secret(client):
    """An admin adds a hook in the Django admin; leaving the secret blank generates one."""
    user = get_user_model().objects.create_superuser("root", "r@x.test", "pw-123456")
    client.force_login(user)
    namespace = CandidateFactory().namespace
    response = client.post(
        "/admin/learning/webhook/add/",
        {
            "namespace": namespace.pk,
            "url": "https://hooks.example.test/fw",
            "events": ["candidate.applied"],
            "secret": "",
            "active": "on",
            "description": "",
            "deliveries-TOTAL_FORMS": "0",
            "deliveries-INITIAL_FORMS": "0",
            "deliveries-MIN_NUM_FORMS": "0",
            "deliveries-MAX_NUM_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    hook = Webhook.objects.get()
    assert hook.secret.startswith("whsec_") and hook.events == ["candidate.applied"]
    assert hook.created_by == "root"


def test_the_state_machine_and_quality_gate_emit_their_events(
    admin_client_api, django_capture_on_commit_callbacks
):
    """The real call sites emit: candidate_create → candidate.created, approving →
    candidate.decided then candidate.applied; with a rollout policy the approved
    version is a canary, and the gate's verdict that it is worse → version.flagged and
    version.rolled_back; an admin promoting the next canary → version.promoted (all
    delivered to one hook)."""
    from learning.services.candidates import candidate_create
    from playbooks.rollout import (
        rollout_gate_evaluate,
        rollout_policy_set,
        rollout_promote,
    )
    from playbooks.services import playbook_create
    from review.services import candidate_approve
    from tests.factories import TrajectoryFactory

    namespace = admin_client_api.namespace
    playbook = playbook_create(namespace=namespace, slug="airline", name="Airline")
    rollout_policy_set(
        playbook=playbook, share=0.5, min_runs_per_arm=20, margin=0.05, actor="ops"
    )

    def approved(content):
        with django_capture_on_commit_callbacks(execute=True):
            candidate, _ = candidate_create(
                namespace=namespace,
                kind="strategy_helpful",
                playbook=playbook,
                content=content,
                rationale="seen in successful runs",
                confidence=0.8,
            )
        with django_capture_on_commit_callbacks(execute=True):
            candidate_approve(
                namespace=namespace,
                candidate_id=candidate.pk,
                actor=Actor("rev", is_admin=True),
                note="ok",
            )
        playbook.refresh_from_db()

    with Recorder() as receiver:
        webhook_create(namespace=namespace, url=receiver.url)
        approved("Look up the reservation before changing a flight")
        production, canary = playbook.production_version, playbook.canary_version
        for i in range(25):
            TrajectoryFactory(
                namespace=namespace,
                status="success",
                success_score=1.0,
                playbook_versions=[f"airline@{production}"],
            )
            TrajectoryFactory(
                namespace=namespace,
                status="failure",
                success_score=0.0,
                playbook_versions=[f"airline@{canary}"],
            )
        with django_capture_on_commit_callbacks(execute=True):
            rollout_gate_evaluate(playbook=playbook)
        approved("Confirm the cabin class before searching for flights")
        with django_capture_on_commit_callbacks(execute=True):
            rollout_promote(playbook=playbook, actor="token:ops")
    events = [json.loads(r["body"]) for r in receiver.requests]
    assert [e["event"] for e in events] == [
        "candidate.created",
        "candidate.decided",
        "candidate.applied",
        "version.flagged",
        "version.rolled_back",
        "candidate.created",
        "candidate.decided",
        "candidate.applied",
        "version.promoted",
    ]
    assert events[1]["data"]["candidate"]["status"] == "approved"
    assert events[2]["data"]["candidate"]["applied_version"] == canary
    assert events[3]["data"]["version"] == canary and events[3]["data"]["reason"]
    back = events[4]["data"]
    assert (back["playbook"], back["version"], back["production"]) == (
        "airline",
        canary,
        production,
    )
    assert back["by"] == "system:quality-gate"
    assert back["verdict"]["arms"]["canary"]["runs"] == 25
    promoted = events[8]["data"]
    assert promoted["previous"] == production and promoted["by"] == "token:ops"
    assert promoted["version"] == events[7]["data"]["candidate"]["applied_version"]


def test_an_approval_reads_the_hooks_once_and_each_gets_what_it_subscribed(
    admin_client_api,
):
    """An approval's two events are recorded with one read of the namespace's hooks:
    a hook of candidate.applied gets only that one, a hook of every event both, in
    order; an approval whose apply fails records only candidate.decided."""
    from playbooks.services import playbook_create
    from review.services import candidate_approve

    namespace = admin_client_api.namespace
    playbook = playbook_create(namespace=namespace, slug="airline", name="Airline")
    applied_only = webhook_create(
        namespace=namespace,
        url="https://hooks.example.com/a",
        events=["candidate.applied"],
    )
    every = webhook_create(namespace=namespace, url="https://hooks.example.com/b")
    ok = CandidateFactory(namespace=namespace, playbook=playbook)
    with CaptureQueriesContext(connection) as queries:
        candidate_approve(namespace=namespace, candidate_id=ok.pk, actor=Actor("rev"))
    reads = [q for q in queries if q["sql"].startswith('SELECT "learning_webhook"')]
    assert len(reads) == 1
    stored = WebhookDelivery.objects.order_by("id")
    assert [(d.webhook_id, d.event) for d in stored] == [
        (every.pk, "candidate.decided"),
        (applied_only.pk, "candidate.applied"),
        (every.pk, "candidate.applied"),
    ]
    assert stored[0].payload["candidate"]["status"] == "approved"
    assert stored[1].payload["candidate"]["status"] == "applied"

    WebhookDelivery.objects.all().delete()
    orphan = CandidateFactory(namespace=namespace, kind="strategy_helpful")
    failed = candidate_approve(
        namespace=namespace, candidate_id=orphan.pk, actor=Actor("rev")
    )
    assert failed.status == "apply_failed"
    assert [(d.webhook_id, d.event) for d in WebhookDelivery.objects.all()] == [
        (every.pk, "candidate.decided")
    ]
