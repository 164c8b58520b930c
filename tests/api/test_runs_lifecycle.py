"""A run's life through the API: steps appended, completed, feedback, detail."""

import pytest

from learning.models import Feedback, Trajectory

pytestmark = pytest.mark.django_db

RUNS = "/api/v1/runs/"


@pytest.fixture
def running(agent_client):
    response = agent_client.post_json(
        RUNS,
        {
            "external_id": "live-1",
            "task_description": "Cancel reservation H8Q05L",
            "task_type": "airline.cancel",
            "steps": [{"type": "message", "description": "user: cancel H8Q05L"}],
        },
    )
    assert response.status_code == 201
    return response.json()


def test_steps_are_appended_after_the_last_one(agent_client, running):
    """Appended steps continue the numbering and come back in the detail, in order."""
    url = f"{RUNS}{running['id']}/steps/"
    first = agent_client.post_json(
        url,
        {
            "steps": [
                {
                    "type": "tool_call",
                    "tool": "get_reservation_details",
                    "description": "get_reservation_details(reservation_id=H8Q05L)",
                    "result": {"cabin": "economy"},
                    "tokens": 120,
                },
            ]
        },
    )
    second = agent_client.post_json(
        url,
        {
            "steps": [
                {"type": "decision", "description": "Economy within 24h: refundable"},
                {"type": "action", "description": "cancel_reservation(H8Q05L)"},
            ]
        },
    )
    assert (first.status_code, second.status_code) == (201, 201)
    assert [s["index"] for s in first.json()] == [1]
    assert [s["index"] for s in second.json()] == [2, 3]
    detail = agent_client.get(f"{RUNS}{running['id']}/").json()
    assert [s["type"] for s in detail["steps"]] == [
        "message",
        "tool_call",
        "decision",
        "action",
    ]
    assert detail["steps"][1]["tokens"] == 120 and detail["step_count"] == 4


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "steps"),
        ({"steps": []}, "steps"),
        ({"steps": [{"type": "wander", "description": "x"}]}, "type"),
        ({"steps": [{"type": "action"}]}, "description"),
    ],
)
def test_bad_steps_are_a_400_and_nothing_is_appended(
    agent_client, running, body, field
):
    """Appending validates like ingest: 400 naming the field, no step stored."""
    response = agent_client.post_json(f"{RUNS}{running['id']}/steps/", body)
    assert response.status_code == 400
    assert field in str(response.json())
    assert Trajectory.objects.get(pk=running["id"]).steps.count() == 1


def test_complete_finishes_the_run_with_its_outcome(agent_client, running):
    """complete sets status, score, metrics and completed_at; effective score follows."""
    response = agent_client.post_json(
        f"{RUNS}{running['id']}/complete/",
        {
            "status": "success",
            "success_score": 0.9,
            "duration_ms": 1200,
            "metrics": {"turns": 4},
        },
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["status"], body["success_score"], body["effective_score"]) == (
        "success",
        0.9,
        0.9,
    )
    assert body["metrics"] == {"turns": 4} and body["completed_at"] is not None


def test_a_finished_run_takes_no_more_steps_or_completion(agent_client, running):
    """After complete, appending or completing again is a 409 that says why."""
    agent_client.post_json(f"{RUNS}{running['id']}/complete/", {"status": "failure"})
    steps = agent_client.post_json(
        f"{RUNS}{running['id']}/steps/",
        {"steps": [{"type": "action", "description": "x"}]},
    )
    again = agent_client.post_json(
        f"{RUNS}{running['id']}/complete/", {"status": "success"}
    )
    assert (steps.status_code, again.status_code) == (409, 409)
    assert "already finished" in steps.json()["detail"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "status"),
        ({"status": "running"}, "status"),
        ({"status": "success", "success_score": 3}, "success_score"),
        ({"status": "success", "metrics": "fast"}, "metrics"),
    ],
)
def test_bad_completions_are_a_400(agent_client, running, body, field):
    """complete needs a final status and a 0–1 score."""
    response = agent_client.post_json(f"{RUNS}{running['id']}/complete/", body)
    assert response.status_code == 400
    assert field in response.json()
    assert Trajectory.objects.get(pk=running["id"]).status == "running"


def test_feedback_answers_with_the_new_effective_score(agent_client, settings):
    """The feedback response carries the feedback, the new effective score and the
    relearning mark (average strategy: (1.0 + 0.2) / 2 = 0.6)."""
    settings.FLYWHEEL_SCORE_STRATEGY = "average"
    run = agent_client.post_json(
        RUNS, {"task_description": "x", "status": "success", "success_score": 1.0}
    ).json()
    response = agent_client.post_json(
        f"{RUNS}{run['id']}/feedback/",
        {
            "feedback_type": "human",
            "score": 0.2,
            "source": "qa",
            "message": "wrong seat",
        },
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["effective_score"] == pytest.approx(0.6)
    assert body["run"]["effective_score"] == pytest.approx(0.6)
    assert (
        body["feedback"]["feedback_type"] == "human"
        and body["feedback"]["score"] == 0.2
    )
    # |0.2 - 1.0| = 0.8 > threshold 0.3: marked with priority round(0.8 * 10) = 8
    assert body["needs_relearning"] is True and body["relearning_priority"] == 8
    assert Feedback.objects.filter(trajectory_id=run["id"]).count() == 1


@pytest.mark.parametrize(
    "body, field",
    [
        ({"score": 0.5}, "feedback_type"),
        ({"feedback_type": "gut_feeling", "score": 0.5}, "feedback_type"),
        ({"feedback_type": "human"}, "score"),
        ({"feedback_type": "human", "score": 1.5}, "score"),
        ({"feedback_type": "human", "score": "good"}, "score"),
        ({"feedback_type": "human", "score": 0.5, "metrics": [1]}, "metrics"),
    ],
)
def test_bad_feedback_is_a_400_and_nothing_changes(agent_client, running, body, field):
    """Feedback validates type and 0–1 score; nothing is stored on a 400."""
    response = agent_client.post_json(f"{RUNS}{running['id']}/feedback/", body)
    assert response.status_code == 400
    assert field in response.json()
    assert Feedback.objects.count() == 0


def test_feedback_messages_are_redacted(agent_client, running):
    """Secrets in feedback text are masked before storage."""
    agent_client.post_json(
        f"{RUNS}{running['id']}/feedback/",
        {
            "feedback_type": "human",
            "score": 0.5,
            "message": "it printed sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAA in the chat",
        },
    )
    assert "sk-ant" not in Feedback.objects.get().message


@pytest.mark.parametrize("suffix", ["", "steps/", "complete/", "feedback/"])
def test_unknown_and_malformed_run_ids_are_404(agent_client, suffix):
    """A run id that is not a UUID, or not a run, is a JSON 404 on every endpoint."""
    for run_id in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        url = f"{RUNS}{run_id}/{suffix}"
        response = (
            agent_client.get(url) if not suffix else agent_client.post_json(url, {})
        )
        assert response.status_code == 404
        assert "detail" in response.json()


WRONG_VALUES = [None, True, -1, 1.5, 2**70, "", "x", "\x00", [], [1], {}, {"a": "\x00"}]


def test_no_value_breaks_complete_feedback_or_steps(agent_client):
    """complete, feedback and steps answer 2xx/400/409 for any value in any field:
    never a 500."""
    run_id = agent_client.post_json(RUNS, {"task_description": "fuzz"}).json()["id"]
    cases = {
        "complete/": (
            [
                "status",
                "success_score",
                "error_message",
                "duration_ms",
                "tokens_used",
                "cost_usd",
                "metrics",
                "playbook_versions",
            ],
            {"status": "success"},
        ),
        "feedback/": (
            ["feedback_type", "score", "source", "message", "metrics"],
            {"feedback_type": "human", "score": 0.5},
        ),
    }
    for suffix, (fields, base) in cases.items():
        for field in fields:
            for value in WRONG_VALUES:
                response = agent_client.post_json(
                    f"{RUNS}{run_id}/{suffix}", {**base, field: value}
                )
                assert response.status_code in (200, 201, 400, 409), (
                    suffix,
                    field,
                    value,
                )
    for value in WRONG_VALUES:
        response = agent_client.post_json(f"{RUNS}{run_id}/steps/", {"steps": value})
        assert response.status_code in (201, 400, 409), value


@pytest.mark.parametrize(
    "query",
    [
        "page=abc",
        "page=0",
        "page=-1",
        "page_size=abc",
        "page_size=-5",
        "page_size=100000",
        "min_score=NaN",
        "max_score=1e999",
        "status=",
        "created_after=2026-13-01",
        "needs_relearning=maybe",
        "q=%00",
    ],
)
def test_odd_list_queries_never_500(agent_client, query):
    """Junk in the list's query string is a 200, 400 or 404, never a 500."""
    response = agent_client.get(f"{RUNS}?{query}")
    assert response.status_code in (200, 400, 404), response.content


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_keep_every_step_in_one_sequence(api_factory):
    """Four clients appending to one run at once: every step is stored, numbered
    1..12 without gaps or clashes (the run row is locked while appending)."""
    import json
    import threading

    from django.db import connection
    from django.test import Client

    agent = api_factory("acme", "agent", "appender")
    run_id = agent.post_json(
        RUNS,
        {
            "task_description": "long task",
            "steps": [{"type": "message", "description": "go"}],
        },
    ).json()["id"]
    header = agent._credentials["HTTP_AUTHORIZATION"]
    barrier = threading.Barrier(4)
    codes, errors = [], []

    def append(worker):
        try:
            client = Client(HTTP_AUTHORIZATION=header)
            body = json.dumps(
                {
                    "steps": [
                        {"type": "action", "description": f"w{worker}-{i}"}
                        for i in range(3)
                    ]
                }
            )
            barrier.wait(timeout=10)
            response = client.post(
                f"{RUNS}{run_id}/steps/", data=body, content_type="application/json"
            )
            codes.append(response.status_code)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=append, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors and codes == [201] * 4
    run = Trajectory.objects.get(pk=run_id)
    indexes = list(run.steps.order_by("index").values_list("index", flat=True))
    assert indexes == list(range(13))
    # each worker's three steps stay together and in order
    descriptions = list(
        run.steps.order_by("index").values_list("description", flat=True)
    )[1:]
    for start in range(0, 12, 3):
        worker = descriptions[start].split("-")[0]
        assert descriptions[start : start + 3] == [f"{worker}-{i}" for i in range(3)]
