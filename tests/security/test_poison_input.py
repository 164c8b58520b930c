"""Input that PostgreSQL stores but nothing can read back (issue 15 items 4 and 6).

A step started in year 1 at +01:00 is year 0 in UTC: PostgreSQL keeps it, psycopg
cannot read it, so the run's detail, its console page, the exports and reflection of
other runs failed afterwards, while the client was told 400 after the commit. Every
stored time is now checked by `payloads.datetime_check` before anything is written;
lone surrogates are a 400 naming the field; an export that meets an unreadable row
says so in its last line and fails instead of ending at a line boundary."""

import json

import pytest
from django.db import connection

from learning.models import Step, Trajectory
from tests.factories import StepFactory, TrajectoryFactory

pytestmark = pytest.mark.django_db

POISON_TIMES = [
    "0001-01-01T00:00:00+01:00",  # the issue's: year 0 in UTC
    "0001-01-01T00:00:00Z",  # year 1, but earlier than UTC-xx can show
    "9999-12-31T23:00:00-05:00",  # year 10000 in UTC
    "2024-05-01T10:00:00+20:00",  # an offset PostgreSQL refuses
]


def _run(**extra) -> dict:
    return {
        "task_description": "Rebook the flight",
        "status": "running",
        "steps": [{"type": "action", "description": "look up"}],
        **extra,
    }


def _step(**extra) -> dict:
    return {"type": "action", "description": "look up", **extra}


@pytest.mark.parametrize("when", POISON_TIMES)
@pytest.mark.parametrize("field", ["started_at", "ended_at"])
def test_a_step_time_out_of_range_is_400_naming_it_and_stores_nothing(
    agent_client, when, field
):
    response = agent_client.post_json(
        "/api/v1/runs/", _run(external_id="poison", steps=[_step(**{field: when})])
    )
    assert response.status_code == 400
    assert field in response.json()["steps"]["0"], response.json()
    assert not Trajectory.objects.exists()


@pytest.mark.parametrize("when", POISON_TIMES)
def test_an_appended_step_time_out_of_range_is_400_and_the_run_stays_readable(
    agent_client, when
):
    run_id = agent_client.post_json("/api/v1/runs/", _run()).json()["id"]
    response = agent_client.post_json(
        f"/api/v1/runs/{run_id}/steps/", {"steps": [_step(started_at=when)]}
    )
    assert response.status_code == 400
    assert "started_at" in response.json()["steps"]["0"]
    assert Step.objects.count() == 1
    detail = agent_client.get(f"/api/v1/runs/{run_id}/")
    assert detail.status_code == 200 and len(detail.json()["steps"]) == 1


@pytest.mark.parametrize("field", ["started_at", "completed_at"])
def test_run_times_out_of_range_are_400_in_a_batch_too(agent_client, field):
    batch = {
        "runs": [
            _run(external_id="ok"),
            _run(external_id="bad", **{field: POISON_TIMES[0]}),
        ]
    }
    response = agent_client.post_json("/api/v1/runs/", batch)
    assert response.status_code == 400
    assert field in response.json()["runs"]["1"]
    assert not Trajectory.objects.exists()


def test_the_edges_of_the_range_are_stored_and_read_back(agent_client):
    steps = [
        _step(started_at="0001-01-02T00:00:00Z", ended_at="9999-12-30T23:59:59Z"),
        _step(started_at="2024-05-01T10:00:00+15:59"),
    ]
    response = agent_client.post_json("/api/v1/runs/", _run(steps=steps))
    assert response.status_code == 201, response.json()
    detail = agent_client.get(f"/api/v1/runs/{response.json()['id']}/").json()
    assert detail["steps"][0]["started_at"].startswith("0001-01-02")
    assert detail["steps"][1]["started_at"] is not None


def _raw_post(client, path: str, body: str):
    return client.post(path, data=body.encode(), content_type="application/json")


@pytest.mark.parametrize("field", ["description", "tool"])
def test_a_lone_surrogate_in_a_step_is_400_naming_the_field(agent_client, field):
    """The JSON escape \\ud800 decodes to a string PostgreSQL cannot encode (it was a
    500 on both endpoints)."""
    step = '{"type": "tool_call", "description": "call", "tool": "t"}'
    step = step.replace(f'"{field}": "', f'"{field}": "x\\ud800')
    body = (
        '{"external_id": "sur", "task_description": "x", "status": "running", '
        f'"steps": [{step}]}}'
    )
    response = _raw_post(agent_client, "/api/v1/runs/", body)
    assert response.status_code == 400
    assert "surrogate" in response.json()["steps"]["0"][field][0]
    assert not Trajectory.objects.exists()

    run_id = agent_client.post_json("/api/v1/runs/", _run()).json()["id"]
    response = _raw_post(
        agent_client, f"/api/v1/runs/{run_id}/steps/", f'{{"steps": [{step}]}}'
    )
    assert response.status_code == 400
    assert "surrogate" in response.json()["steps"]["0"][field][0]
    assert Step.objects.count() == 1


@pytest.mark.parametrize(
    "field", ["task_description", "user_id", "session_id", "agent", "task_type"]
)
def test_a_lone_surrogate_in_a_run_field_is_400_naming_it(agent_client, field):
    body = json.dumps(_run(**{field: "x"})).replace('"x"', '"x\\udfff"')
    response = _raw_post(agent_client, "/api/v1/runs/", body)
    assert response.status_code == 400
    assert field in response.json()
    assert not Trajectory.objects.exists()


def test_feedback_source_with_a_surrogate_is_400(agent_client):
    run_id = agent_client.post_json("/api/v1/runs/", _run()).json()["id"]
    body = '{"feedback_type": "human", "score": 0.5, "source": "\\ud800"}'
    response = _raw_post(agent_client, f"/api/v1/runs/{run_id}/feedback/", body)
    assert response.status_code == 400 and "source" in response.json()


@pytest.mark.parametrize("limit", [str(10**30), "-1", "1e3", "99999999999"])
def test_an_export_limit_out_of_range_is_400_not_500(reviewer_client, limit):
    response = reviewer_client.get(f"/api/v1/exports/sft/?limit={limit}")
    assert response.status_code == 400
    assert "limit" in response.json()


@pytest.mark.parametrize("since", ["0000-12-31", "2024-13-01", "10000-01-01"])
def test_an_export_date_out_of_range_is_400(reviewer_client, since):
    response = reviewer_client.get(f"/api/v1/exports/episodes/?since={since}")
    assert response.status_code == 400 and "since" in response.json()


def _poisoned_namespace(namespace) -> list[Trajectory]:
    """Three finished runs; the second one's step holds a time written before times
    were checked (straight into the table: the API no longer lets it in)."""
    runs = []
    for i in range(3):
        run = TrajectoryFactory(
            namespace=namespace,
            status="success",
            success_score=1.0,
            effective_score=1.0,
        )
        StepFactory(trajectory=run, index=0, type="action", description=f"s{i}")
        runs.append(run)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE learning_step SET started_at = '0001-01-01 00:00:00+01' "
            "WHERE trajectory_id = %s",
            [runs[1].pk],
        )
    return runs


@pytest.mark.parametrize("format", ["episodes", "sft"])
def test_an_export_that_meets_an_unreadable_row_says_so_and_fails(
    reviewer_client, format
):
    """Before: the stream ended at a line boundary after the good records, looking
    complete. Now its last line is an error naming how many came before, and the
    stream itself fails (an aborted response, not a clean end)."""
    _poisoned_namespace(reviewer_client.namespace)
    response = reviewer_client.get(f"/api/v1/exports/{format}/")
    assert response.status_code == 200
    lines = []
    with pytest.raises(Exception, match="export stopped"):
        for chunk in response.streaming_content:
            lines.append(json.loads(chunk))
    assert "error" in lines[-1], lines
    assert lines[-1]["error"]["code"] == "export_incomplete"
    assert lines[-1]["error"]["records"] == len(lines) - 1


def test_the_export_command_fails_on_an_unreadable_row(reviewer_client, tmp_path):
    from django.core.management import CommandError, call_command

    _poisoned_namespace(reviewer_client.namespace)
    target = tmp_path / "episodes.jsonl"
    with pytest.raises(CommandError, match="incomplete"):
        call_command(
            "export_runs",
            "--format",
            "episodes",
            "--namespace",
            reviewer_client.namespace.slug,
            "--output",
            str(target),
        )
    assert "export_incomplete" in target.read_text().splitlines()[-1]


@pytest.mark.parametrize("field", ["content", "rationale", "user_id"])
def test_a_lone_surrogate_in_a_proposal_is_400_naming_the_field(agent_client, field):
    """A guard: DRF's CharField already refuses surrogates here."""
    from tests.factories import make_playbook

    make_playbook(agent_client.namespace, slug="airline", mode="agentic")
    proposal = {
        "kind": "durable_fact",
        "playbook": "airline",
        "content": "The client prefers aisle seats",
        "rationale": "said so",
        "user_id": "u-1",
    }
    body = json.dumps(proposal).replace(f'"{field}": "', f'"{field}": "\\ud800')
    response = _raw_post(agent_client, "/api/v1/candidates/", body)
    assert response.status_code == 400
    assert "surrogate" in response.json()[field][0].lower()
