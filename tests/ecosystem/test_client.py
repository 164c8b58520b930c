"""The flywheel-client package against a live server (and a scripted flaky one)."""

import socket

import pytest
from flywheel_client import ApiError, Flywheel, TransportError

from learning.models import RunStatus, Trajectory
from tests.ecosystem.fakes import Recorder
from tests.factories import make_token

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fw(live_server):
    token, raw = make_token(namespace="acme", role="agent", name="client-agent")
    return Flywheel(live_server.url, raw, agent="support-bot", sleep=lambda s: None)


def test_context_manager_records_a_run_with_steps_and_outcome(fw):
    """A `with client.run(...)` block posts the run with its steps, usage and outcome
    once; posting the same run again (a retry) returns the same stored run."""
    with fw.run(
        "Change the flight of 4WQ150",
        task_type="airline.change_flight",
        user_id="mia",
        session_id="s-1",
    ) as run:
        run.message("user", "I want to change my flight")
        run.tool_call(
            "get_reservation_details",
            {"reservation_id": "4WQ150"},
            {"cabin": "economy"},
        )
        run.observe("The reservation is economy")
        run.use("airline@3")
        run.add_usage(tokens=1200, cost_usd=0.01)
        run.succeed(score=0.9)
    assert run.id is not None
    stored = Trajectory.objects.get(pk=run.id)
    assert stored.external_id == run.external_id
    assert stored.status == RunStatus.SUCCESS and stored.success_score == 0.9
    assert stored.agent == "support-bot"
    assert stored.playbook_versions == ["airline@3"]
    assert stored.tokens_used == 1200 and stored.duration_ms is not None
    steps = list(stored.steps.order_by("index"))
    assert [s.type for s in steps] == ["message", "tool_call", "observation"]
    assert steps[1].tool == "get_reservation_details"
    assert steps[1].result == {
        "arguments": {"reservation_id": "4WQ150"},
        "output": {"cabin": "economy"},
    }

    again = fw.post_run(run.payload())
    assert again["id"] == run.id
    assert Trajectory.objects.count() == 1


def test_an_exception_marks_the_run_failed_and_propagates(fw):
    """An exception inside the block records a failed run with the error, then
    re-raises it."""
    with pytest.raises(RuntimeError, match="booking API down"):
        with fw.run("Cancel reservation X") as run:
            run.message("user", "cancel it")
            raise RuntimeError("booking API down")
    stored = Trajectory.objects.get(pk=run.id)
    assert stored.status == RunStatus.FAILURE
    assert stored.success_score == 0.0
    assert stored.error_message == "RuntimeError: booking API down"


def test_feedback_returns_the_new_effective_score(fw):
    """Feedback is posted to the run and the answer carries the effective score."""
    with fw.run("Book a flight") as run:
        run.succeed(1.0)
    answer = fw.feedback(run.id, 0.2, feedback_type="human", message="wrong date")
    assert answer["effective_score"] < 1.0
    assert answer["needs_relearning"] is True


def test_bad_input_raises_api_error_naming_the_field(fw):
    """A 400 becomes an ApiError whose field_errors name the field."""
    with pytest.raises(ApiError) as excinfo:
        fw.post_run(
            {"external_id": "x-1", "status": "nonsense", "task_description": "t"}
        )
    assert excinfo.value.status == 400
    assert "status" in excinfo.value.field_errors


def test_retries_429_and_5xx_with_backoff_honouring_retry_after():
    """429 and 503 answers are retried with backoff (Retry-After wins) until success."""
    delays = []
    replies = [
        (429, {"Retry-After": "2"}, {"detail": "slow down"}),
        (503, {}, {"detail": "busy"}),
        (201, {}, {"id": "r-1"}),
    ]
    with Recorder(replies) as server:
        fw = Flywheel(server.url, "fw_test", sleep=delays.append, backoff=0.5)
        assert fw.post_run({"external_id": "e-1", "task_description": "t"}) == {
            "id": "r-1"
        }
    assert len(server.requests) == 3
    assert delays[0] == 2.0
    assert 0.5 <= delays[1] <= 1.0  # attempt 1: 0.5 * 2**1, jittered down to half
    assert all(
        r["headers"]["Authorization"] == "Bearer fw_test" for r in server.requests
    )


def test_a_500_on_feedback_is_not_retried_but_a_run_post_is():
    """Feedback is not idempotent: a 500 is raised at once; a run post (idempotent by
    external_id) is retried; retries stop after max_retries."""
    with Recorder([(500, {}, {"detail": "boom"})]) as server:
        fw = Flywheel(server.url, "fw_test", sleep=lambda s: None)
        with pytest.raises(ApiError) as excinfo:
            fw.feedback("r-1", 0.5)
        assert excinfo.value.status == 500
        assert len(server.requests) == 1
    with Recorder([(500, {}, {})] * 3) as server:
        fw = Flywheel(server.url, "fw_test", sleep=lambda s: None, max_retries=2)
        with pytest.raises(ApiError):
            fw.post_run({"external_id": "e-1", "task_description": "t"})
        assert len(server.requests) == 3


def test_connection_errors_are_retried_then_raised():
    """A server that is not there is retried max_retries times, then TransportError."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    delays = []
    fw = Flywheel(
        f"http://127.0.0.1:{port}", "fw_test", sleep=delays.append, max_retries=3
    )
    with pytest.raises(TransportError):
        fw.feedback("r-1", 0.5)  # refused: never processed, so retried even here
    assert len(delays) == 3
    assert 0.25 <= delays[0] <= 0.5 and 1.0 <= delays[2] <= 2.0  # exponential


@pytest.fixture
def airline(live_server):
    """An agentic playbook with one strategy, made through the admin API."""
    admin_token, admin_raw = make_token(namespace="acme", role="admin", name="pb-admin")
    admin = Flywheel(live_server.url, admin_raw, sleep=lambda s: None)
    admin.request(
        "POST",
        "playbooks/",
        json_body={
            "slug": "airline",
            "name": "Airline support",
            "scope": "team",
            "mode": "agentic",
        },
    )
    admin.request(
        "POST",
        "playbooks/airline/strategies/",
        json_body={
            "type": "helpful",
            "description": "Look up the reservation before changing a flight",
            "context": "flight changes",
        },
    )
    return admin.request("GET", "playbooks/airline/")


def test_recall_inside_a_run_links_the_version(fw, airline):
    """run.recall() fetches the playbook context for the run's task and records
    "slug@version" in the run's playbook_versions."""
    with fw.run(
        "Change the flight of reservation 4WQ150", task_type="airline.change_flight"
    ) as run:
        context = run.recall("airline", budget_tokens=500)
        run.succeed()
    assert context.playbook == "airline"
    assert context.version == airline["version"] >= 2
    assert "Look up the reservation" in context.context
    assert context.items and context.tokens > 0
    stored = Trajectory.objects.get(pk=run.id)
    assert stored.playbook_versions == [f"airline@{context.version}"]
    with pytest.raises(ApiError) as excinfo:
        fw.recall("no-such-playbook", task="x")
    assert excinfo.value.status == 404


def test_propose_a_candidate_with_evidence(fw, airline):
    """propose() posts a candidate citing the run as evidence; it waits for review;
    the same proposal again is merged, not duplicated."""
    with fw.run("Change the flight of reservation 4WQ150") as run:
        run.succeed()
    proposal = dict(
        kind="strategy_helpful",
        content="Confirm the cabin class before offering a change",
        rationale="basic economy can't be changed",
        confidence=0.7,
        playbook="airline",
        evidence_runs=[run.id],
    )
    candidate = fw.propose(**proposal)
    assert candidate["status"] == "pending" and candidate["playbook"] == "airline"
    assert candidate["evidence_runs"] == [run.id]
    again = fw.propose(**proposal)
    assert again["id"] == candidate["id"]
    with pytest.raises(ApiError) as excinfo:
        fw.propose(kind="strategy_helpful", content="x", playbook="nope")
    assert "playbook" in excinfo.value.field_errors
