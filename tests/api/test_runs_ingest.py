"""POST /api/v1/runs/: whole runs, batches, idempotency, and every class of bad input."""

import json
import threading

import pytest
from django.db import connection
from django.test import Client

from learning.models import Step, Trajectory
from learning.services import runs as run_services

pytestmark = pytest.mark.django_db

RUNS = "/api/v1/runs/"


def run_payload(external_id="tb-airline-17-0", **overrides):
    payload = {
        "external_id": external_id,
        "task_description": "Change the flight of reservation 4WQ150",
        "task_type": "airline.change_flight",
        "user_id": "mia_li_3668",
        "session_id": "s-1",
        "status": "failure",
        "success_score": 0.0,
        "duration_ms": 41000,
        "tokens_used": 18234,
        "cost_usd": 0.091,
        "metrics": {"turns": 14},
        "playbook_versions": ["airline@3"],
        "steps": [
            {"type": "message", "description": "user: I want to change my flight"},
            {
                "type": "tool_call",
                "tool": "get_reservation_details",
                "description": "get_reservation_details(reservation_id=4WQ150)",
                "result": {"status": "ok"},
            },
            {"type": "observation", "description": "The reservation is basic economy"},
        ],
    }
    payload.update(overrides)
    return payload


def post_raw(client, body: bytes, content_type="application/json"):
    return client.post(RUNS, data=body, content_type=content_type)


def test_a_documented_run_is_stored_with_its_steps_in_order(agent_client):
    """The DESIGN payload is stored field for field; the 201 body is the stored run."""
    response = agent_client.post_json(RUNS, run_payload())
    assert response.status_code == 201, response.json()
    body = response.json()
    run = Trajectory.objects.get(pk=body["id"])
    assert run.namespace.slug == "acme"
    assert run.agent == "agent-1"  # the token's name when the payload names no agent
    assert (run.status, run.success_score, run.effective_score) == ("failure", 0.0, 0.0)
    assert (run.duration_ms, run.tokens_used, run.cost_usd) == (41000, 18234, 0.091)
    assert run.metrics == {"turns": 14} and run.playbook_versions == ["airline@3"]
    assert run.completed_at is not None
    assert [(s.index, s.type, s.tool) for s in run.steps.all()] == [
        (0, "message", ""),
        (1, "tool_call", "get_reservation_details"),
        (2, "observation", ""),
    ]
    assert body["steps"][1]["result"] == {"status": "ok"}
    assert body["step_count"] == 3


def test_a_run_without_status_is_running_and_has_no_score(agent_client):
    """Leaving out status creates a running run that steps and complete extend."""
    response = agent_client.post_json(
        RUNS, {"task_description": "Book a flight", "agent": "planner"}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "running" and body["effective_score"] is None
    assert body["agent"] == "planner" and body["completed_at"] is None
    blank = agent_client.post_json(RUNS, {"task_description": "x", "agent": ""}).json()
    assert blank["agent"] == "agent-1"


def test_reposting_an_external_id_returns_the_first_run_with_200(agent_client):
    """Idempotent on external_id: a repeat (even with other content) answers 200 with
    the stored run, and nothing is added."""
    first = agent_client.post_json(RUNS, run_payload())
    again = agent_client.post_json(
        RUNS, run_payload(task_description="something else", steps=[])
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["task_description"] == "Change the flight of reservation 4WQ150"
    assert Trajectory.objects.count() == 1 and Step.objects.count() == 3


def test_the_same_external_id_in_two_namespaces_is_two_runs(agent_client, api_factory):
    """external_id is unique per namespace, not globally."""
    other = api_factory("globex", "agent", "agent-2")
    a = agent_client.post_json(RUNS, run_payload())
    b = other.post_json(RUNS, run_payload())
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] != b.json()["id"]


def test_runs_without_external_id_are_never_merged(agent_client):
    """Without an external_id every post is a new run."""
    payload = run_payload(external_id=None)
    ids = {agent_client.post_json(RUNS, payload).json()["id"] for _ in range(2)}
    assert len(ids) == 2


def test_a_batch_stores_every_run_and_reports_created_and_existing(agent_client):
    """{"runs": [...]} stores each run; the answer lists ids in order with `created`;
    duplicates inside the batch and already-stored runs are not stored again."""
    agent_client.post_json(RUNS, run_payload("r-0"))
    batch = {
        "runs": [
            run_payload("r-0"),
            run_payload("r-1"),
            run_payload("r-2"),
            run_payload("r-1"),
        ]
    }
    response = agent_client.post_json(RUNS, batch)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["created"], body["existing"]) == (2, 2)
    assert [r["external_id"] for r in body["runs"]] == ["r-0", "r-1", "r-2", "r-1"]
    assert [r["created"] for r in body["runs"]] == [False, True, True, False]
    assert body["runs"][1]["id"] == body["runs"][3]["id"]
    assert Trajectory.objects.count() == 3
    assert Step.objects.count() == 9
    repeat = agent_client.post_json(RUNS, batch)
    assert repeat.status_code == 200 and repeat.json()["created"] == 0


def test_an_invalid_batch_names_index_and_field_and_stores_nothing(agent_client):
    """One bad step in run 3 rejects the whole batch: the error is keyed by run index,
    step index and field, and not one run of the batch is stored."""
    runs = [run_payload(f"b-{i}") for i in range(5)]
    runs[3]["steps"][1]["type"] = "teleport"
    runs[4]["success_score"] = 2
    response = agent_client.post_json(RUNS, {"runs": runs})
    assert response.status_code == 400
    errors = response.json()["runs"]
    assert "type" in errors["3"]["steps"]["1"]
    assert "success_score" in errors["4"]
    assert set(errors) == {"3", "4"}
    assert Trajectory.objects.count() == 0 and Step.objects.count() == 0


def test_a_failure_while_storing_a_batch_rolls_everything_back(
    agent_client, monkeypatch
):
    """Ingest is one transaction: if storing fails midway, no run or step remains."""

    def explode(*, runs):
        raise RuntimeError("pipeline down")

    monkeypatch.setattr(run_services, "runs_reflection_decide", explode)
    with pytest.raises(RuntimeError):
        run_services.runs_ingest(
            namespace=agent_client.namespace,
            agent="a",
            runs=[
                {
                    "task_description": "x",
                    "status": "success",
                    "success_score": 1.0,
                    "external_id": "boom",
                    "steps": [{"type": "action", "description": "y"}],
                }
            ],
        )
    assert Trajectory.objects.count() == 0 and Step.objects.count() == 0


def test_finished_runs_reach_the_pipeline_once_and_running_ones_do_not(
    agent_client, monkeypatch
):
    """runs_ingest hands newly stored finished runs to the reflection pipeline; a repeat
    post or a running run is not handed over."""
    seen = []
    monkeypatch.setattr(
        run_services,
        "runs_reflection_decide",
        lambda *, runs: seen.extend(r.external_id for r in runs),
    )
    agent_client.post_json(RUNS, {"runs": [run_payload("f-1"), run_payload("f-2")]})
    agent_client.post_json(RUNS, run_payload("f-1"))
    agent_client.post_json(
        RUNS, {"external_id": "live", "task_description": "still going"}
    )
    assert seen == ["f-1", "f-2"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"status": "exploded"}, "status"),
        ({"success_score": 1.7}, "success_score"),
        ({"success_score": -0.1}, "success_score"),
        ({"success_score": "high"}, "success_score"),
        ({"success_score": True}, "success_score"),
        ({"task_description": None}, "task_description"),
        ({"task_description": 42}, "task_description"),
        ({"external_id": ["x"]}, "external_id"),
        ({"duration_ms": -5}, "duration_ms"),
        ({"duration_ms": 2**70}, "duration_ms"),
        ({"tokens_used": "many"}, "tokens_used"),
        ({"cost_usd": -1}, "cost_usd"),
        ({"metrics": [1, 2]}, "metrics"),
        ({"metrics": {"note": "nul\x00byte"}}, "metrics"),
        ({"playbook_versions": "airline@3"}, "playbook_versions"),
        ({"started_at": "yesterday"}, "started_at"),
        (
            {
                "started_at": "2026-01-02T00:00:00Z",
                "completed_at": "2026-01-01T00:00:00Z",
            },
            "completed_at",
        ),
        ({"steps": "none"}, "steps"),
        ({"steps": [{"type": "teleport", "description": "x"}]}, "type"),
        ({"steps": [{"type": "action"}]}, "description"),
        ({"steps": [{"type": "action", "description": 7}]}, "description"),
        ({"steps": [{"type": "action", "description": "x", "tokens": -1}]}, "tokens"),
        (
            {"steps": [{"type": "action", "description": "x", "tokens": 2**40}]},
            "tokens",
        ),
        (
            {
                "steps": [
                    {"type": "action", "description": "x", "result": {"k": "\x00"}}
                ]
            },
            "result",
        ),
        (
            {
                "steps": [
                    {
                        "type": "action",
                        "description": "x",
                        "started_at": "2024-13-45T00:00",
                    }
                ]
            },
            "started_at",
        ),
        ({"steps": ["just text"]}, "steps"),
    ],
)
def test_bad_fields_get_a_400_naming_the_field(agent_client, body, field):
    """Each bad field is a 400 whose JSON names it; nothing is stored."""
    payload = {"task_description": "Book a flight", **body}
    if payload["task_description"] is None:
        del payload["task_description"]
    response = agent_client.post_json(RUNS, payload)
    assert response.status_code == 400, response.content
    assert field in json.dumps(response.json())
    assert Trajectory.objects.count() == 0


def test_a_missing_task_description_is_named(agent_client):
    """task_description is required."""
    response = agent_client.post_json(RUNS, {"status": "success"})
    assert response.status_code == 400
    assert response.json() == {"task_description": ["This field is required."]}


@pytest.mark.parametrize(
    "raw, needle",
    [
        (b"{not json", "JSON parse error"),
        (b'{"task_description": "x", "success_score": NaN}', "JSON parse error"),
        (b"[" * 50000 + b"]" * 50000, "nested too deeply"),
        (b'[{"task_description": "x"}]', "must be a JSON object"),
        (b'"a run"', "must be a JSON object"),
        (b"42", "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (b'{"runs": "all of them"}', "runs"),
        (b'{"runs": []}', "runs"),
    ],
)
def test_malformed_and_non_object_bodies_get_a_json_400(agent_client, raw, needle):
    """Malformed JSON and bodies that are not an object are 400 with a JSON body."""
    response = post_raw(agent_client, raw)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert needle in json.dumps(response.json())


def test_form_encoded_bodies_get_415(agent_client):
    """Only JSON is accepted."""
    response = post_raw(
        agent_client, b"task_description=x", "application/x-www-form-urlencoded"
    )
    assert response.status_code == 415
    assert "detail" in response.json()


def test_an_oversized_body_gets_413_json_before_parsing(agent_client, settings):
    """A body over FLYWHEEL_MAX_BODY_BYTES is refused with 413 and a JSON body."""
    settings.FLYWHEEL_MAX_BODY_BYTES = 10_000
    payload = run_payload(steps=[{"type": "observation", "description": "x" * 20_000}])
    response = agent_client.post_json(RUNS, payload)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert Trajectory.objects.count() == 0


def test_blank_step_descriptions_are_kept(agent_client):
    """A tool that returned nothing is a blank observation: allowed, unlike a missing
    description."""
    payload = run_payload(steps=[{"type": "observation", "description": ""}])
    response = agent_client.post_json(RUNS, payload)
    assert response.status_code == 201
    assert response.json()["steps"][0]["description"] == ""


@pytest.mark.django_db(transaction=True)
def test_concurrent_posts_of_one_run_store_it_once(api_factory):
    """Eight clients posting the same external_id at the same instant store exactly one
    run (and its steps once); every response carries that run's id."""
    agent = api_factory("acme", "agent", "racer")
    header = agent._credentials["HTTP_AUTHORIZATION"]
    payload = json.dumps(run_payload("race-1"))
    barrier = threading.Barrier(8)
    responses, errors = [], []

    def post():
        try:
            client = Client(HTTP_AUTHORIZATION=header)
            barrier.wait(timeout=10)
            response = client.post(RUNS, data=payload, content_type="application/json")
            responses.append((response.status_code, response.json()["id"]))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    codes = sorted(code for code, _id in responses)
    assert codes == [200] * 7 + [201]
    ids = {run_id for _code, run_id in responses}
    assert len(ids) == 1
    assert Trajectory.objects.filter(external_id="race-1").count() == 1
    assert Step.objects.filter(trajectory_id=ids.pop()).count() == 3


@pytest.mark.django_db(transaction=True)
def test_concurrent_overlapping_batches_store_each_run_once(api_factory):
    """Two batches sharing runs, posted at once, store each external_id once."""
    agent = api_factory("acme", "agent", "racer")
    header = agent._credentials["HTTP_AUTHORIZATION"]
    bodies = [
        json.dumps({"runs": [run_payload(f"o-{i}") for i in (0, 1, 2, 3)]}),
        json.dumps({"runs": [run_payload(f"o-{i}") for i in (3, 2, 4, 5)]}),
    ]
    barrier = threading.Barrier(2)
    results, errors = [], []

    def post(body):
        try:
            client = Client(HTTP_AUTHORIZATION=header)
            barrier.wait(timeout=10)
            response = client.post(RUNS, data=body, content_type="application/json")
            results.append(response.json())
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(b,)) for b in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert Trajectory.objects.count() == 6
    assert sum(r["created"] for r in results) == 6
    ids = {}
    for body in results:
        for run in body["runs"]:
            assert ids.setdefault(run["external_id"], run["id"]) == run["id"]


def test_batches_insert_runs_in_one_order_whatever_the_posted_order(api_factory):
    """Two batches sharing external_ids in opposite orders would deadlock on the
    unique index if each locked its runs in posted order: runs are inserted sorted
    by external_id, so concurrent batches queue instead of deadlocking."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    agent = api_factory("acme", "agent", "orderly")
    body = {"runs": [run_payload(f"ord-{i}") for i in (3, 0, 2, 1)]}
    with CaptureQueriesContext(connection) as queries:
        response = agent.post(RUNS, body, format="json")
    assert response.status_code == 201
    insert = next(
        q["sql"]
        for q in queries
        if q["sql"].startswith('INSERT INTO "learning_trajectory"')
    )
    positions = [insert.index(f"ord-{i}") for i in range(4)]
    assert positions == sorted(positions)
    assert [r["external_id"] for r in response.json()["runs"]] == [
        "ord-3",
        "ord-0",
        "ord-2",
        "ord-1",
    ]


def _deadlock():
    from django.db import OperationalError

    class DeadlockDetected(Exception):
        sqlstate = "40P01"

    exc = OperationalError("deadlock detected")
    exc.__cause__ = DeadlockDetected()
    return exc


def test_a_deadlock_is_retried_inside_the_server(api_factory, monkeypatch):
    """A deadlock the database reports is retried (the batch is stored once)."""
    from learning.services import runs as run_services

    real, calls = run_services._runs_store, []

    def flaky(*args):
        calls.append(1)
        if len(calls) == 1:
            raise _deadlock()
        return real(*args)

    monkeypatch.setattr(run_services, "_runs_store", flaky)
    agent = api_factory("acme", "agent", "retry")
    response = agent.post(RUNS, {"runs": [run_payload("dl-1")]}, format="json")
    assert response.status_code == 201 and len(calls) == 2
    assert Trajectory.objects.filter(external_id="dl-1").count() == 1


def test_a_deadlock_that_persists_is_a_503_with_retry_after(api_factory, monkeypatch):
    """Never a 500: when the deadlock keeps coming back the client is told to retry,
    and nothing is stored."""
    from learning.services import runs as run_services

    def always(*args):
        raise _deadlock()

    monkeypatch.setattr(run_services, "_runs_store", always)
    monkeypatch.setattr(run_services.time, "sleep", lambda s: None)
    agent = api_factory("acme", "agent", "busy")
    response = agent.post(RUNS, {"runs": [run_payload("dl-2")]}, format="json")
    assert response.status_code == 503 and response["Retry-After"] == "1"
    assert response.json()["code"] == "busy"
    assert not Trajectory.objects.filter(external_id="dl-2").exists()


WRONG_VALUES = [
    None,
    True,
    0,
    -1,
    1.5,
    2**70,
    "",
    "x",
    "\x00",
    "9" * 300,
    [],
    [1],
    {},
    {"a": "\x00"},
]
RUN_FIELDS = [
    "external_id",
    "agent",
    "user_id",
    "session_id",
    "task_description",
    "task_type",
    "status",
    "success_score",
    "error_message",
    "duration_ms",
    "tokens_used",
    "cost_usd",
    "metrics",
    "playbook_versions",
    "started_at",
    "completed_at",
    "steps",
]
STEP_FIELDS = [
    "type",
    "description",
    "result",
    "tool",
    "tokens",
    "started_at",
    "ended_at",
]


def test_no_value_in_any_field_causes_a_server_error(agent_client):
    """Every run and step field, given each of a set of wrong-typed or extreme values,
    is either stored (201) or refused with a 400 naming that field: never a 500."""
    for field in RUN_FIELDS:
        for value in WRONG_VALUES:
            payload = {**run_payload(external_id=None), field: value}
            response = agent_client.post_json(RUNS, payload)
            assert response.status_code in (201, 400), (field, value, response.content)
            if response.status_code == 400:
                assert field in response.json(), (field, value, response.json())
    for field in STEP_FIELDS:
        for value in WRONG_VALUES:
            step = {"type": "action", "description": "x", field: value}
            response = agent_client.post_json(
                RUNS, run_payload(external_id=None, steps=[step])
            )
            assert response.status_code in (201, 400), (field, value, response.content)
            if response.status_code == 400:
                assert field in response.json()["steps"]["0"], (field, value)


def test_a_single_post_answers_what_was_stored_without_reading_it_back(
    agent_client, django_assert_max_num_queries
):
    """The 201 answer to a single run is built from what was just written — the same
    body a GET returns afterwards — without re-reading the run and its steps."""
    payload = run_payload("echo-1")
    payload["steps"][0]["started_at"] = "2026-01-01T10:00:00Z"
    response = agent_client.post(RUNS, payload, format="json")
    assert response.status_code == 201
    stored = agent_client.get(f"{RUNS}{response.json()['id']}/").json()
    assert response.json() == stored
