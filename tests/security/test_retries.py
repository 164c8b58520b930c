"""Retries that duplicated or escaped a limit (issue 15 item 9): a client retrying a
step append after a timeout appended twice; a chunked body (no Content-Length) was
never measured against FLYWHEEL_MAX_BODY_BYTES."""

import json
import socket
import threading

import pytest

from learning.models import Step
from tests.factories import make_token
from tests.reliability.procs import gunicorn  # noqa: F401 - a fixture

pytestmark = pytest.mark.django_db


def _started(client) -> str:
    response = client.post_json(
        "/api/v1/runs/", {"task_description": "Rebook", "status": "running"}
    )
    return response.json()["id"]


def _steps(*names: str, **extra) -> dict:
    return {
        "steps": [{"type": "action", "description": name, **extra} for name in names]
    }


def test_a_retry_with_the_same_idempotency_key_stores_nothing_twice(agent_client):
    run_id = _started(agent_client)
    url = f"/api/v1/runs/{run_id}/steps/"
    first = agent_client.post_json(url, _steps("a", "b"), HTTP_IDEMPOTENCY_KEY="k-1")
    again = agent_client.post_json(url, _steps("a", "b"), HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true" and not first.has_header(
        "Idempotent-Replayed"
    )
    assert Step.objects.filter(trajectory_id=run_id).count() == 2
    # Another key is another append; no key at all is never deduplicated.
    agent_client.post_json(url, _steps("c"), HTTP_IDEMPOTENCY_KEY="k-2")
    agent_client.post_json(url, _steps("d"))
    agent_client.post_json(url, _steps("d"))
    indexes = list(
        Step.objects.filter(trajectory_id=run_id).values_list("description", "index")
    )
    assert indexes == [("a", 0), ("b", 1), ("c", 2), ("d", 3), ("d", 4)]


def test_client_step_ids_make_appends_idempotent_step_by_step(agent_client):
    run_id = _started(agent_client)
    url = f"/api/v1/runs/{run_id}/steps/"
    first = agent_client.post_json(
        url,
        {"steps": [{"type": "action", "description": "a", "step_id": "s1"}]},
    )
    assert first.status_code == 201 and first.json()[0]["step_id"] == "s1"
    # The retry also carries a step the first attempt never sent: only that is new.
    both = agent_client.post_json(
        url,
        {
            "steps": [
                {"type": "action", "description": "a", "step_id": "s1"},
                {"type": "action", "description": "b", "step_id": "s2"},
            ]
        },
    )
    assert both.status_code == 201
    assert [(s["index"], s["step_id"]) for s in both.json()] == [(0, "s1"), (1, "s2")]
    assert both.json()[0] == first.json()[0]
    assert Step.objects.filter(trajectory_id=run_id).count() == 2
    detail = agent_client.get(f"/api/v1/runs/{run_id}/").json()
    assert [s["step_id"] for s in detail["steps"]] == ["s1", "s2"]


def test_a_retry_after_the_run_finished_answers_the_stored_steps(agent_client):
    """The first append went through, its answer was lost, the agent finished the
    run, then retried: the same answer, not a 409."""
    run_id = _started(agent_client)
    url = f"/api/v1/runs/{run_id}/steps/"
    first = agent_client.post_json(url, _steps("a"), HTTP_IDEMPOTENCY_KEY="late")
    agent_client.post_json(
        f"/api/v1/runs/{run_id}/complete/", {"status": "success", "success_score": 1}
    )
    again = agent_client.post_json(url, _steps("a"), HTTP_IDEMPOTENCY_KEY="late")
    assert again.status_code == 201 and again.json() == first.json()
    new = agent_client.post_json(url, _steps("b"), HTTP_IDEMPOTENCY_KEY="other")
    assert new.status_code == 409


def test_a_step_id_twice_in_one_request_or_a_bad_key_is_400(agent_client):
    run_id = _started(agent_client)
    url = f"/api/v1/runs/{run_id}/steps/"
    response = agent_client.post_json(url, _steps("a", "b", step_id="same"))
    assert response.status_code == 400
    assert "step_id" in response.json()["steps"]["1"]
    response = agent_client.post_json(url, _steps("a"), HTTP_IDEMPOTENCY_KEY="k" * 151)
    assert response.status_code == 400 and "Idempotency-Key" in response.json()
    assert not Step.objects.exists()


def test_a_run_posted_with_step_ids_keeps_them(agent_client):
    response = agent_client.post_json(
        "/api/v1/runs/",
        {
            "task_description": "Rebook",
            "status": "running",
            "steps": [{"type": "action", "description": "a", "step_id": "s1"}],
        },
    )
    assert response.json()["steps"][0]["step_id"] == "s1"
    url = f"/api/v1/runs/{response.json()['id']}/steps/"
    again = agent_client.post_json(url, _steps("a", step_id="s1"))
    assert again["Idempotent-Replayed"] == "true"
    assert Step.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_of_one_append_store_it_once(live_server):
    """Eight copies of the same append at once (a client's retries overlapping the
    slow first attempt): one set of steps, every answer the same."""
    import httpx2

    token, raw = make_token(namespace="acme", role="agent", name="retrier")
    headers = {"Authorization": f"Bearer {raw}"}
    base = live_server.url + "/api/v1/runs/"
    run_id = httpx2.post(
        base, json={"task_description": "x", "status": "running"}, headers=headers
    ).json()["id"]
    answers = []

    def append():
        answers.append(
            httpx2.post(
                f"{base}{run_id}/steps/",
                json=_steps("a", "b", "c"),
                headers={**headers, "Idempotency-Key": "same"},
                timeout=30,
            )
        )

    threads = [threading.Thread(target=append) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {a.status_code for a in answers} == {201}
    assert len({json.dumps(a.json()) for a in answers}) == 1
    assert Step.objects.filter(trajectory_id=run_id).count() == 3


def _chunked_post(url: str, token: str, body: bytes, chunk: int = 65536) -> tuple:
    """POST with Transfer-Encoding: chunked and no Content-Length, over a raw socket
    (HTTP clients add a Content-Length when they know the size)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(
            (
                "POST /api/v1/runs/ HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\n"
                f"Authorization: Bearer {token}\r\n"
                "Content-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
        )
        try:
            for start in range(0, len(body), chunk):
                part = body[start : start + chunk]
                sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered before the whole body was sent
        answer = b""
        while data := sock.recv(65536):
            answer += data
    head, _, rest = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), head.decode(), rest


@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_over_the_limit_is_413_and_one_under_it_is_read(
    gunicorn,  # noqa: F811
):
    server = gunicorn(workers=1, FLYWHEEL_MAX_BODY_BYTES=200_000)
    _token, raw = make_token(namespace="acme", role="agent", name="chunky")
    big = json.dumps(
        {"task_description": "x" * 300_000, "status": "running", "external_id": "big"}
    ).encode()
    code, _head, body = _chunked_post(server.url, raw, big)
    assert code == 413, body[:300]
    assert b"over the limit of 200000 bytes" in body
    small = json.dumps(
        {"task_description": "small chunked run", "status": "running"}
    ).encode()
    code, _head, body = _chunked_post(server.url, raw, small, chunk=7)
    assert code == 201, body[:300]
    assert b"small chunked run" in body
    from learning.models import Trajectory

    assert list(Trajectory.objects.values_list("task_description", flat=True)) == [
        "small chunked run"
    ]
