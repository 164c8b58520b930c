"""Webhooks cannot be aimed at this machine or its network: internal addresses are
refused when a hook is registered and again when it is delivered (to the address that
was checked), redirects are not followed, and the delivery log keeps a status code and
a short fixed reason, never what the receiver answered."""

import json
import socket
import threading
from http.server import ThreadingHTTPServer

import pytest
from django.db import connection

from learning.models import DeliveryStatus, Webhook, WebhookDelivery
from learning.webhooks import webhook_create, webhook_delivery_task, webhook_event_emit
from tests.ecosystem.fakes import Recorder

pytestmark = pytest.mark.django_db

INTERNAL = [
    "http://127.0.0.1:9/hook",
    "http://localhost:9/",
    "http://[::1]:9/",
    "http://[::ffff:127.0.0.1]/",
    "http://169.254.169.254/latest/",
    "http://0.0.0.0/",
    "http://10.0.0.7/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://224.0.0.1/",  # multicast
    "http://240.0.0.1/",  # reserved
    "http://2130706433/",  # 127.0.0.1 as one decimal number
    "http://0177.0.0.1/",  # octal
    "http://0x7f.0.0.1/",  # hex
    "http://127.1/",  # short form
    "http://[::ffff:a9fe:a9fe]/",  # 169.254.169.254, IPv4-mapped
    "http://[64:ff9b::7f00:1]/",  # 127.0.0.1 through NAT64
    "http://[2002:7f00:1::]/",  # 127.0.0.1 through 6to4
    "http://api.localhost/",
]


@pytest.mark.parametrize("url", INTERNAL)
def test_registering_an_internal_address_is_refused(admin_client_api, url, settings):
    """Every spelling of loopback, private, link-local, reserved, multicast or
    unspecified addresses gets a 400 naming `url`, and nothing is stored."""
    settings.FLYWHEEL_WEBHOOK_ALLOW_PRIVATE = False
    response = admin_client_api.post_json(
        "/api/v1/webhooks/", {"url": url, "events": ["candidate.decided"]}
    )
    assert response.status_code == 400, (url, response.status_code, response.json())
    assert "url" in response.json()
    assert not Webhook.objects.exists()


def test_allowing_private_targets_keeps_metadata_and_unspecified_out(
    admin_client_api, settings
):
    """FLYWHEEL_WEBHOOK_ALLOW_PRIVATE lets an on-premises receiver on a private or
    loopback address register; link-local (cloud metadata), unspecified and
    multicast addresses stay refused."""
    settings.FLYWHEEL_WEBHOOK_ALLOW_PRIVATE = True
    for url in ("http://127.0.0.1:9/hook", "http://10.1.2.3/h", "http://[fd00::5]/h"):
        response = admin_client_api.post_json("/api/v1/webhooks/", {"url": url})
        assert response.status_code == 201, (url, response.json())
    for url in (
        "http://169.254.169.254/latest/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
    ):
        response = admin_client_api.post_json("/api/v1/webhooks/", {"url": url})
        assert response.status_code == 400, url


def test_the_django_admin_refuses_internal_addresses(client, settings):
    """The other way to register a hook checks the address the same way."""
    from django.contrib.auth import get_user_model

    from tests.factories import CandidateFactory

    settings.FLYWHEEL_WEBHOOK_ALLOW_PRIVATE = False
    user = get_user_model().objects.create_superuser("root", "r@x.test", "pw-123456")
    client.force_login(user)
    namespace = CandidateFactory().namespace
    response = client.post(
        "/admin/learning/webhook/add/",
        {
            "namespace": namespace.pk,
            "url": "http://169.254.169.254/latest/",
            "secret": "",
            "active": "on",
            "description": "",
            "deliveries-TOTAL_FORMS": "0",
            "deliveries-INITIAL_FORMS": "0",
            "deliveries-MIN_NUM_FORMS": "0",
            "deliveries-MAX_NUM_FORMS": "0",
        },
    )
    assert response.status_code == 200  # the form again, with the error
    assert b"not a public address" in response.content
    assert not Webhook.objects.exists()


@pytest.fixture
def resolver(monkeypatch):
    """Answers name lookups from a table (there is no DNS here): `answers[name]` is a
    list of answers (lists of addresses), used one per lookup; the last one repeats."""
    answers: dict[str, list[list[str]]] = {}
    calls: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            return real(host, port, *args, **kwargs)
        calls.append(host)
        queue = answers[host]
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 0))
            for address in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return type("Resolver", (), {"answers": answers, "calls": calls})


def _deliver_one(namespace) -> WebhookDelivery:
    (delivery,) = webhook_event_emit(
        namespace=namespace, event="candidate.created", payload={"n": 1}
    )
    webhook_delivery_task(delivery.pk)
    delivery.refresh_from_db()
    return delivery


def test_a_name_that_resolves_inside_at_delivery_is_not_connected_to(
    admin_client_api, resolver, settings
):
    """DNS rebinding: a name that was public when registered but resolves to
    loopback when delivered is refused at connect time; the local server never sees
    a request, and the log says why in a fixed phrase."""
    settings.FLYWHEEL_WEBHOOK_ALLOW_PRIVATE = False
    with Recorder() as receiver:
        port = receiver.server.server_address[1]
        resolver.answers["rebind.example.com"] = [["93.184.216.34"], ["127.0.0.1"]]
        response = admin_client_api.post_json(
            "/api/v1/webhooks/", {"url": f"http://rebind.example.com:{port}/hook"}
        )
        assert response.status_code == 201, response.json()
        delivery = _deliver_one(admin_client_api.namespace)
    assert receiver.requests == []
    assert delivery.status == DeliveryStatus.RETRYING and delivery.attempts == 1
    assert delivery.last_status_code is None
    assert "not a public address" in delivery.last_error
    assert "127.0.0.1" not in delivery.last_error


def test_delivery_connects_to_the_address_it_checked(
    admin_client_api, resolver, settings
):
    """The address checked is the address connected to (resolved once per attempt),
    with the hook's own name in the Host header."""
    settings.FLYWHEEL_WEBHOOK_ALLOW_PRIVATE = True
    with Recorder() as checked:
        port = checked.server.server_address[1]
        with _recorder_on("127.0.0.2", port) as other:
            hook = webhook_create(
                namespace=admin_client_api.namespace,
                url=f"http://pin.example.com:{port}/hook",
            )
            # the first lookup (the check) says 127.0.0.1, any later one 127.0.0.2
            resolver.answers["pin.example.com"] = [["127.0.0.1"], ["127.0.0.2"]]
            delivery = _deliver_one(hook.namespace)
    assert delivery.status == DeliveryStatus.DELIVERED, delivery.last_error
    assert len(checked.requests) == 1 and other.requests == []
    assert checked.requests[0]["headers"]["Host"] == f"pin.example.com:{port}"
    assert resolver.calls == ["pin.example.com"]


class _recorder_on(Recorder):
    """A Recorder bound to another loopback address (127.0.0.2 …)."""

    def __init__(self, host: str, port: int):
        super().__init__()
        handler = self.server.RequestHandlerClass
        self.server.server_close()
        self.server = ThreadingHTTPServer((host, port), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


def test_redirects_are_not_followed_and_bodies_never_stored(admin_client_api, settings):
    """A receiver answering 302 to an internal URL is not followed: the internal
    server sees nothing, the log stores 302 and "HTTP 302". An error answer's body
    (which may be an internal page) is never stored nor served."""
    settings.FLYWHEEL_WEBHOOK_ALLOW_PRIVATE = True
    leak = b"INTERNAL-ONLY: db_password=hunter2"
    with Recorder([(500, {}, leak)]) as internal:
        with Recorder([(302, {"Location": f"{internal.url}/admin"}, b"")]) as hook_rx:
            hook = webhook_create(namespace=admin_client_api.namespace, url=hook_rx.url)
            redirected = _deliver_one(hook.namespace)
        assert internal.requests == []
        assert (redirected.last_status_code, redirected.last_error) == (302, "HTTP 302")
        hook.url = internal.url
        hook.save()
        internal.replies = [(500, {}, leak)]
        failed = _deliver_one(hook.namespace)
    assert (failed.last_status_code, failed.last_error) == (500, "HTTP 500")
    log = admin_client_api.get(f"/api/v1/webhooks/{hook.pk}/deliveries/")
    assert b"INTERNAL-ONLY" not in log.content and b"hunter2" not in log.content
    with connection.cursor() as cursor:
        cursor.execute("SELECT last_error FROM learning_webhookdelivery")
        assert all("INTERNAL" not in row[0] for row in cursor.fetchall())


def test_refused_and_silent_ports_look_the_same(
    admin_client_api, settings, monkeypatch
):
    """A closed port (connection refused), a port that accepts and never answers
    (timeout) and a port that speaks something else get the same short reason, so
    the delivery log cannot be used to scan ports."""
    settings.FLYWHEEL_WEBHOOK_ALLOW_PRIVATE = True
    monkeypatch.setattr("learning.webhooks.WEBHOOK_TIMEOUT_SECONDS", 0.5)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)
    garbage = socket.socket()
    garbage.bind(("127.0.0.1", 0))
    garbage.listen(5)

    def speak_garbage():
        conn, _ = garbage.accept()
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
        conn.close()

    threading.Thread(target=speak_garbage, daemon=True).start()
    reasons = {}
    try:
        for name, port in (
            ("refused", closed_port),
            ("silent", silent.getsockname()[1]),
            ("garbage", garbage.getsockname()[1]),
        ):
            hook = webhook_create(
                namespace=admin_client_api.namespace,
                url=f"http://127.0.0.1:{port}/hook",
                events=["candidate.created"],
            )
            Webhook.objects.exclude(pk=hook.pk).update(active=False)
            delivery = _deliver_one(hook.namespace)
            reasons[name] = (
                delivery.status,
                delivery.last_status_code,
                delivery.last_error,
            )
    finally:
        silent.close()
        garbage.close()
    assert len(set(reasons.values())) == 1, reasons
    status, code, reason = reasons["refused"]
    assert status == DeliveryStatus.RETRYING and code is None
    assert "refused" not in reason.lower() and "errno" not in reason.lower()
    assert len(reason) < 80 and json.dumps(reason)


@pytest.fixture
def tls_receiver(tmp_path):
    """An HTTPS receiver on 127.0.0.1 with a certificate for pin.example.com (made
    with Debian's openssl), recording the TLS server name and Host header it got."""
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=pin.example.com"]
        + ["-addext", "subjectAltName=DNS:pin.example.com"],
        check=True,
        capture_output=True,
    )
    receiver = Recorder()
    seen: dict[str, str] = {}
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: seen.__setitem__("sni", name)
    receiver.server.socket = context.wrap_socket(
        receiver.server.socket, server_side=True
    )
    receiver.cafile, receiver.seen = str(cert), seen
    with receiver:
        yield receiver


def test_https_delivery_keeps_the_name_for_tls(
    admin_client_api, resolver, settings, monkeypatch, tls_receiver
):
    """Over HTTPS the pinned connection still sends the hook's name as the TLS
    server name and checks the certificate against it (not against the address):
    a certificate for the name is accepted, one for another name is not."""
    import ssl

    settings.FLYWHEEL_WEBHOOK_ALLOW_PRIVATE = True
    port = tls_receiver.server.server_address[1]
    resolver.answers["pin.example.com"] = [["127.0.0.1"]]
    resolver.answers["other.example.com"] = [["127.0.0.1"]]
    trusting = ssl.create_default_context(cafile=tls_receiver.cafile)
    monkeypatch.setattr(ssl, "create_default_context", lambda *a, **kw: trusting)
    hook = webhook_create(
        namespace=admin_client_api.namespace,
        url=f"https://pin.example.com:{port}/hook",
    )
    delivered = _deliver_one(hook.namespace)
    assert delivered.status == DeliveryStatus.DELIVERED, delivered.last_error
    assert tls_receiver.seen["sni"] == "pin.example.com"
    assert tls_receiver.requests[0]["headers"]["Host"] == f"pin.example.com:{port}"
    hook.url = f"https://other.example.com:{port}/hook"
    hook.save()
    mismatched = _deliver_one(hook.namespace)
    assert mismatched.status == DeliveryStatus.RETRYING
    assert len(tls_receiver.requests) == 1
