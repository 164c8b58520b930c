"""Training exports (sft, preferences, episodes) through the API and the command."""

import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from learning.models import Trajectory
from tests.factories import StepFactory, TrajectoryFactory

pytestmark = pytest.mark.django_db

SECRET = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"
TASK = "Change the flight of reservation 4WQ150"


def _run(
    namespace,
    *,
    status,
    score,
    task=TASK,
    task_type="airline.change_flight",
    effective=None,
    secret=False,
):
    run = TrajectoryFactory(
        namespace=namespace,
        status=status,
        success_score=score,
        effective_score=score if effective is None else effective,
        task_description=task,
        task_type=task_type,
    )
    StepFactory(
        trajectory=run, index=0, type="message", tool="", description=f"user: {task}"
    )
    StepFactory(
        trajectory=run,
        index=1,
        type="tool_call",
        tool="get_reservation_details",
        description="get_reservation_details(reservation_id=4WQ150)",
        result={"cabin": "economy"},
    )
    # Written straight to the table: never went through ingest's redaction.
    note = f"token {SECRET}" if secret else "Done: flight changed"
    StepFactory(
        trajectory=run,
        index=2,
        type="message",
        tool="",
        description=f"assistant: {note}",
    )
    return run


def _lines(response):
    assert response.status_code == 200, response
    assert response["Content-Type"] == "application/x-ndjson"
    body = b"".join(response.streaming_content).decode()
    return [json.loads(line) for line in body.splitlines()]


@pytest.fixture
def acme(reviewer_client):
    return reviewer_client.namespace


def test_sft_exports_successful_runs_above_the_score_as_chat(
    reviewer_client, acme, django_assert_num_queries
):
    """SFT keeps successful runs at or above min_score (effective score, default 0.8),
    as chat messages with tool calls; secrets in stored steps stay redacted."""
    good = _run(acme, status="success", score=1.0, secret=True)
    _run(acme, status="success", score=1.0)
    _run(acme, status="success", score=1.0, effective=0.3)  # feedback pulled it down
    _run(acme, status="failure", score=0.0)
    with django_assert_num_queries(4):  # token + its last_used_at, runs, their steps
        records = _lines(reviewer_client.get("/api/v1/exports/sft/"))
    assert len(records) == 2
    first = records[0]
    assert first["metadata"]["run_id"] == str(good.pk)
    messages = first["messages"]
    assert [m["role"] for m in messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    assert messages[1]["content"] == TASK
    call = messages[2]["tool_calls"][0]
    assert call["function"]["name"] == "get_reservation_details"
    assert json.loads(call["function"]["arguments"]) == {"reservation_id": "4WQ150"}
    assert messages[3] == {
        "role": "tool",
        "tool_call_id": call["id"],
        "content": '{"cabin": "economy"}',
    }
    assert SECRET not in json.dumps(records) and "[REDACTED]" in messages[4]["content"]

    lower = _lines(reviewer_client.get("/api/v1/exports/sft/?min_score=0.2"))
    assert len(lower) == 3


def test_preferences_pair_success_and_failure_on_the_same_task(reviewer_client, acme):
    """Preference pairs join the best success with the worst failure of one task;
    tasks without both, or where the success does not score higher, give none."""
    best = _run(acme, status="success", score=1.0)
    _run(acme, status="success", score=0.9)
    worst = _run(acme, status="failure", score=0.0)
    _run(acme, status="success", score=1.0, task="Book a new flight")  # no failure
    _run(acme, status="failure", score=0.5, task="Cancel X")
    _run(acme, status="success", score=0.4, task="Cancel X")  # not better
    records = _lines(reviewer_client.get("/api/v1/exports/preferences/"))
    assert len(records) == 1
    pair = records[0]
    assert pair["metadata"]["chosen"]["run_id"] == str(best.pk)
    assert pair["metadata"]["rejected"]["run_id"] == str(worst.pk)
    assert pair["prompt"][1] == {"role": "user", "content": TASK}
    assert pair["chosen"][-1]["content"] == "Done: flight changed"


def test_episodes_carry_effective_score_rewards_and_filters(reviewer_client, acme):
    """Episodes are every finished run with the effective score as reward; task type
    and date filters narrow them; running runs are left out."""
    old = _run(acme, status="success", score=1.0, effective=0.25)
    Trajectory.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(days=10)
    )
    _run(acme, status="failure", score=0.0, task_type="airline.cancel")
    TrajectoryFactory(namespace=acme, status="running", success_score=None)
    records = _lines(reviewer_client.get("/api/v1/exports/episodes/"))
    assert len(records) == 2
    assert {r["reward"] for r in records} == {0.25, 0.0}
    assert [s["type"] for s in records[0]["steps"]] == [
        "message",
        "tool_call",
        "message",
    ]
    since = (timezone.now() - timedelta(days=1)).date().isoformat()
    recent = _lines(reviewer_client.get(f"/api/v1/exports/episodes/?since={since}"))
    assert [r["task_type"] for r in recent] == ["airline.cancel"]
    typed = _lines(
        reviewer_client.get("/api/v1/exports/episodes/?task_type=airline.change_flight")
    )
    assert [r["episode_id"] for r in typed] == [str(old.pk)]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("min_score=high", "min_score"),
        ("max_score=2", "max_score"),
        ("since=yesterday", "since"),
        ("limit=0", "limit"),
    ],
)
def test_bad_filters_get_400_naming_the_field(reviewer_client, query, field):
    """Invalid filter values are refused before anything is streamed."""
    response = reviewer_client.get(f"/api/v1/exports/episodes/?{query}")
    assert response.status_code == 400
    assert field in response.json()


def test_exports_are_for_reviewers_and_stay_in_the_namespace(
    agent_client, reviewer_client, other_client
):
    """Agents may not export; another namespace's token sees none of acme's runs; an
    unknown format is a 404."""
    _run(reviewer_client.namespace, status="success", score=1.0)
    assert agent_client.get("/api/v1/exports/sft/").status_code == 403
    assert _lines(other_client.get("/api/v1/exports/sft/")) == []
    assert reviewer_client.get("/api/v1/exports/parquet/").status_code == 404


def test_export_runs_command_writes_the_same_jsonl(
    reviewer_client, acme, tmp_path, capsys
):
    """`manage.py export_runs` writes what the API streams, to a file or stdout."""
    _run(acme, status="success", score=1.0)
    _run(acme, status="failure", score=0.0)
    target = tmp_path / "episodes.jsonl"
    call_command(
        "export_runs",
        "--format",
        "episodes",
        "--namespace",
        acme.slug,
        "--output",
        str(target),
    )
    from_file = [json.loads(line) for line in target.read_text().splitlines()]
    from_api = _lines(reviewer_client.get("/api/v1/exports/episodes/"))
    assert from_file == from_api and len(from_file) == 2
    call_command("export_runs", "--format", "sft", "--namespace", acme.slug)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and json.loads(out[0])["metadata"]["status"] == "success"
    with pytest.raises(Exception, match="min_score"):
        call_command(
            "export_runs",
            "--format",
            "sft",
            "--namespace",
            acme.slug,
            "--min-score",
            "x",
        )
