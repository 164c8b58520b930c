"""import_runs and load_demo: converters, validation, idempotent re-runs, the report."""

import gzip
import json
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command

from learning.importers import (
    ImportFileError,
    openai_chat_payload,
    runs_import,
    tau_bench_payload,
)
from learning.models import ApiToken, Membership, Step, Trajectory
from learning.services.tokens import namespace_get_or_create
from tests.factories import make_token

pytestmark = pytest.mark.django_db

FIXTURE = Path(settings.BASE_DIR) / "fixtures" / "tau-bench" / "gpt-4o-airline.json.gz"


@pytest.fixture(scope="module")
def tau_records():
    with gzip.open(FIXTURE, "rt") as handle:
        return json.load(handle)


def run_import(*args):
    out, err = StringIO(), StringIO()
    call_command("import_runs", *map(str, args), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_tau_bench_record_becomes_a_documented_run(tau_records):
    """tau-bench task 0, trial 0 (a failed booking): ids, outcome, user, and a step for
    every message, tool call and tool result, error text kept."""
    payload = tau_bench_payload(tau_records[0])
    assert payload["external_id"] == "tau-airline-0-0"
    assert (payload["task_type"], payload["user_id"]) == ("airline", "mia_li_3668")
    assert (payload["status"], payload["success_score"]) == ("failure", 0.0)
    assert payload["task_description"].startswith("You are mia_li_3668.")
    steps = payload["steps"]
    assert not any(
        "Airline Agent Policy" in s["description"] for s in steps
    )  # no system
    assert steps[0] == {
        "type": "message",
        "description": "user: Hi! I'm looking to book a flight from New "
        "York to Seattle on May 20th.",
    }
    call = next(s for s in steps if s["type"] == "tool_call")
    assert call["tool"] == "get_user_details"
    assert call["description"] == "get_user_details(user_id=mia_li_3668)"
    assert call["result"]["arguments"] == {"user_id": "mia_li_3668"}
    error = next(s for s in steps if s["description"].startswith("Error:"))
    assert error["type"] == "observation" and error["tool"] == "book_reservation"
    assert error["result"]["is_error"] is True
    assert "total price is 305, but paid 255" in error["description"]
    thought = next(s for s in steps if s["type"] == "decision")
    assert thought["tool"] == "think" and "discrepancy" in thought["description"]
    assert (
        all(
            s["description"]
            for s in steps
            if s["type"] == "observation" and s["tool"] == "think"
        )
        is True
    )
    assert payload["metrics"]["tool_errors"] == 1
    assert payload["metrics"]["expected_actions"] == ["book_reservation"]


def test_every_fixture_record_converts_and_validates(tau_records):
    """All 200 fixture runs pass the API's own validation; rewards map to statuses."""
    from learning.api.serializers import RunInputSerializer

    statuses = []
    for record in tau_records:
        serializer = RunInputSerializer(data=tau_bench_payload(record))
        assert serializer.is_valid(), serializer.errors
        statuses.append(serializer.validated_data["status"])
    assert statuses.count("success") == 84 and statuses.count("failure") == 116
    ids = {tau_bench_payload(r)["external_id"] for r in tau_records}
    assert len(ids) == 200


def test_import_runs_is_idempotent_and_reports_counts(tau_records):
    """Importing the fixture twice stores each run once; the report counts created,
    existing and rejected; progress goes to stderr."""
    out, err = run_import(
        FIXTURE,
        "--format",
        "tau-bench",
        "--namespace",
        "imp",
        "--limit",
        6,
        "--batch-size",
        4,
    )
    assert "6 created, 0 existing, 0 rejected" in out
    assert "6/6 records" in err
    assert Trajectory.objects.filter(namespace__slug="imp").count() == 6
    steps = Step.objects.count()
    out, _err = run_import(
        FIXTURE, "--format", "tau-bench", "--namespace", "imp", "--limit", 6
    )
    assert "0 created, 6 existing, 0 rejected" in out
    assert Trajectory.objects.count() == 6 and Step.objects.count() == steps
    run = Trajectory.objects.get(external_id="tau-airline-0-0")
    assert run.agent == "import-tau-bench" and run.steps.count() == len(
        tau_bench_payload(tau_records[0])["steps"]
    )


def test_import_with_a_token_uses_its_namespace_and_name():
    """--token stores into the token's namespace, attributed to the token's name."""
    token, raw = make_token(namespace="tokenns", role="agent", name="nightly-import")
    run_import(
        FIXTURE, "--format", "tau-bench", "--token", raw, "--limit", 2, "--no-progress"
    )
    runs = Trajectory.objects.filter(namespace=token.namespace)
    assert runs.count() == 2 and set(runs.values_list("agent", flat=True)) == {
        "nightly-import"
    }


def test_a_bad_token_is_refused():
    """An unknown token stops the import before anything is read."""
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="invalid or revoked token"):
        run_import(FIXTURE, "--format", "tau-bench", "--token", "fw_nope")
    assert not Trajectory.objects.exists()


def write_lines(path: Path, lines, gz=False):
    text = "\n".join(
        line if isinstance(line, str) else json.dumps(line) for line in lines
    )
    if gz:
        with gzip.open(path, "wt") as handle:
            handle.write(text + "\n")
    else:
        path.write_text(text + "\n")
    return path


CHAT = {
    "id": "conv-1",
    "messages": [
        {"role": "system", "content": "You are a helpful airline agent."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Cancel booking ZFA04Y"}],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {
                        "name": "cancel_reservation",
                        "arguments": '{"reservation_id": "ZFA04Y"}',
                    },
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "c1",
            "content": "Error: reservation not found",
        },
        {"role": "assistant", "content": "I could not find that booking."},
    ],
    "reward": 0.0,
    "task_type": "airline.cancel",
}


def test_openai_chat_conversations_become_runs(tmp_path):
    """openai-chat: content parts joined, tool calls and results become steps (the
    result's tool name found by call id), reward sets the outcome."""
    payload = openai_chat_payload(CHAT)
    assert payload["external_id"] == "conv-1"
    assert payload["task_description"] == "Cancel booking ZFA04Y"
    assert (payload["status"], payload["success_score"]) == ("failure", 0.0)
    assert [(s["type"], s.get("tool", "")) for s in payload["steps"]] == [
        ("message", ""),
        ("tool_call", "cancel_reservation"),
        ("observation", "cancel_reservation"),
        ("message", ""),
    ]
    assert payload["steps"][2]["result"]["is_error"] is True


def test_openai_chat_gz_import_rejects_bad_records_with_reasons(tmp_path):
    """A gzipped JSONL chat log: good records are stored, bad ones are reported with
    their line and reason, and the command exits non-zero; a re-run adds nothing (ids
    without an `id` come from the messages' hash)."""
    no_id = {k: v for k, v in CHAT.items() if k != "id"}
    path = write_lines(
        tmp_path / "chats.jsonl.gz",
        [CHAT, no_id, {"messages": []}, "{oops", {"messages": [1]}],
        gz=True,
    )
    out = StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command(
            "import_runs",
            str(path),
            "--format",
            "openai-chat",
            "--namespace",
            "chat",
            "--agent",
            "support-bot",
            stdout=out,
            stderr=StringIO(),
        )
    assert exit_info.value.code == 1
    text = out.getvalue()
    assert "2 created, 0 existing, 3 rejected" in text
    assert (
        "rejected line 3: cannot convert: 'messages' must be a non-empty list" in text
    )
    assert "rejected line 4: invalid JSON" in text
    assert "rejected line 5: cannot convert" in text
    assert set(Trajectory.objects.values_list("agent", flat=True)) == {"support-bot"}
    with pytest.raises(SystemExit):
        call_command(
            "import_runs",
            str(path),
            "--format",
            "openai-chat",
            "--namespace",
            "chat",
            stdout=(out := StringIO()),
            stderr=StringIO(),
        )
    assert "0 created, 2 existing, 3 rejected" in out.getvalue()


def test_jsonl_runs_are_validated_like_the_api(tmp_path):
    """jsonl: each line is a run payload; invalid ones are rejected naming the field
    (steps.1.type), the rest are stored; lines without external_id stay idempotent."""
    good = {
        "external_id": "j-1",
        "task_description": "Book JFK-SEA",
        "status": "success",
        "success_score": 1.0,
        "steps": [{"type": "action", "description": "search"}],
    }
    bad = {
        "external_id": "j-2",
        "task_description": "Bad step",
        "status": "failure",
        "steps": [
            {"type": "action", "description": "ok"},
            {"type": "teleport", "description": "no"},
        ],
    }
    anonymous = {"task_description": "No id", "status": "partial", "success_score": 0.5}
    path = write_lines(tmp_path / "runs.jsonl", [good, bad, anonymous])
    ns = namespace_get_or_create(slug="jl")
    report = runs_import(path=path, fmt="jsonl", namespace=ns, agent="a")
    assert (report.created, report.existing) == (2, 0)
    assert [(r.where, r.reason) for r in report.rejected] == [
        (
            "line 2",
            'steps.1.type: "teleport" is not a valid step type; must be one of: '
            "action, decision, observation, tool_call, message.",
        )
    ]
    again = runs_import(path=path, fmt="jsonl", namespace=ns, agent="a")
    assert (again.created, again.existing) == (0, 2)
    assert Trajectory.objects.filter(namespace=ns).count() == 2


def test_unreadable_files_are_an_error(tmp_path):
    """A missing file or a JSON array that does not parse stops the import."""
    ns = namespace_get_or_create(slug="x")
    with pytest.raises(ImportFileError, match="no such file"):
        runs_import(
            path=tmp_path / "missing.json", fmt="tau-bench", namespace=ns, agent="a"
        )
    broken = tmp_path / "broken.json"
    broken.write_text('[{"task_id": 1,')
    with pytest.raises(ImportFileError, match="not valid JSON"):
        runs_import(path=broken, fmt="tau-bench", namespace=ns, agent="a")


def test_load_demo_is_idempotent(tmp_path):
    """load_demo creates the demo namespace's runs, the reviewer and admin logins and an
    agent token file; running it again adds nothing and reuses the token."""
    token_file = tmp_path / "demo-agent-token.txt"
    out = StringIO()
    call_command("load_demo", "--limit", 3, "--token-file", str(token_file), stdout=out)
    raw = token_file.read_text().strip()
    assert "reviewer / reviewer-demo" in out.getvalue() and raw in out.getvalue()
    assert Trajectory.objects.filter(namespace__slug="demo").count() == 3
    User = get_user_model()
    reviewer, admin = (
        User.objects.get(username="reviewer"),
        User.objects.get(username="admin"),
    )
    assert reviewer.check_password("reviewer-demo") and admin.check_password(
        "admin-demo"
    )
    assert admin.is_staff and not reviewer.is_staff
    roles = dict(
        Membership.objects.filter(namespace__slug="demo").values_list(
            "user__username", "role"
        )
    )
    assert roles == {"reviewer": "reviewer", "admin": "admin"}
    token = ApiToken.objects.get(key_hash=ApiToken.hash_key(raw))
    assert (token.namespace.slug, token.role) == ("demo", "agent")

    out = StringIO()
    call_command("load_demo", "--limit", 3, "--token-file", str(token_file), stdout=out)
    assert "0 runs imported, 3 already there" in out.getvalue()
    assert token_file.read_text().strip() == raw and "reused" in out.getvalue()
    assert ApiToken.objects.filter(namespace__slug="demo").count() == 1
    assert User.objects.filter(username__in=["reviewer", "admin"]).count() == 2


def test_a_truncated_gzip_file_is_an_error_not_a_traceback(tmp_path):
    """A corrupt .gz stops the import with a message (runs before the damage stay)."""
    good = gzip.compress(
        (
            "\n".join(
                json.dumps({"external_id": f"t-{i}", "task_description": "x"})
                for i in range(50)
            )
            + "\n"
        ).encode()
    )
    path = tmp_path / "runs.jsonl.gz"
    path.write_bytes(good[: len(good) // 2])
    ns = namespace_get_or_create(slug="gz")
    with pytest.raises(ImportFileError, match="cannot read"):
        runs_import(path=path, fmt="jsonl", namespace=ns, agent="a")


def test_undecodable_bytes_reject_the_line_not_the_file(tmp_path):
    """A line with invalid UTF-8 is rejected on its own; the others are stored."""
    path = tmp_path / "runs.jsonl"
    path.write_bytes(
        b'{"external_id": "u-1", "task_description": "fine"}\n'
        b'{"external_id": "u-2", "task_description": "\xff\xfe broken}\n'
        b'{"external_id": "u-3", "task_description": "fine too"}\n'
    )
    report = runs_import(
        path=path, fmt="jsonl", namespace=namespace_get_or_create(slug="u"), agent="a"
    )
    assert (report.created, [r.where for r in report.rejected]) == (2, ["line 2"])


def _chat_run(messages, **extra):
    return {"messages": messages, **extra}


def test_openai_chat_maps_error_text_duration_and_tokens(tmp_path):
    """A log's error, duration and token usage reach the run; per-message usage
    reaches the message's step; a tool result flagged or worded as an error is
    marked as one."""
    record = _chat_run(
        [
            {"role": "user", "content": "Find the capital of Australia."},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": "c1", "function": {"name": "search", "arguments": "{}"}}
                ],
                "usage": {"prompt_tokens": 120, "completion_tokens": 30},
            },
            {
                "role": "tool",
                "tool_call_id": "c1",
                "content": "timeout",
                "is_error": True,
            },
            {"role": "assistant", "content": "Canberra", "usage": {"total_tokens": 77}},
        ],
        id="chat-err-1",
        status="failure",
        error={"message": "search backend timed out"},
        latency_ms=1830.4,
        usage={"total_tokens": 2500},
    )
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps(record) + "\n")
    ns = namespace_get_or_create(slug="imp-extras")
    report = runs_import(path=path, fmt="openai-chat", namespace=ns, agent="bot")
    assert (report.created, report.rejected) == (1, [])
    run = Trajectory.objects.get(namespace=ns)
    assert run.error_message == "search backend timed out"
    assert (run.duration_ms, run.tokens_used) == (1830, 2500)
    steps = list(run.steps.order_by("index"))
    call, observation, answer = steps[1], steps[2], steps[3]
    assert call.tool == "search" and call.tokens == 150
    assert observation.result["is_error"] is True
    assert answer.tokens == 77
    assert run.metrics["tool_errors"] == 1


def test_tool_call_ids_and_tool_calls_written_as_text_are_read(tmp_path):
    """SWE-agent's history shape: `tool_calls` as Python's repr of the list and the
    result's `tool_call_ids` as a list written as text — the result is tied to its
    call (the tool's name carried over)."""
    record = _chat_run(
        [
            {"role": "user", "content": "Fix the missing colon."},
            {
                "role": "assistant",
                "content": "Let me find the file.",
                "tool_calls": "[{'function': {'arguments': '{\"file_name\":\"a.py\"}', "
                "'name': 'find_file'}, 'id': 'call_Pb', 'type': 'function'}]",
            },
            {
                "role": "tool",
                "content": "Found 1 matches",
                "tool_call_ids": "['call_Pb']",
            },
        ],
        id="chat-ids-1",
        status="success",
    )
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps(record) + "\n")
    ns = namespace_get_or_create(slug="imp-ids")
    runs_import(path=path, fmt="openai-chat", namespace=ns, agent="bot")
    steps = list(Trajectory.objects.get(namespace=ns).steps.order_by("index"))
    call = next(s for s in steps if s.type == "tool_call")
    observation = next(s for s in steps if s.type == "observation")
    assert call.tool == "find_file" and call.result["arguments"] == {
        "file_name": "a.py"
    }
    assert observation.tool == "find_file"
    assert observation.result["call_id"] == "call_Pb"


def test_a_whole_file_json_object_is_one_record_and_a_wrong_format_is_named(tmp_path):
    """A pretty-printed JSON object (not JSONL) is read as one record; a record of
    another format is rejected with the format it looks like."""
    record = _chat_run(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        id="one-doc",
        status="success",
    )
    path = tmp_path / "one.json"
    path.write_text(json.dumps(record, indent=2))
    ns = namespace_get_or_create(slug="imp-doc")
    report = runs_import(path=path, fmt="openai-chat", namespace=ns, agent="bot")
    assert (report.read, report.created, report.rejected) == (1, 1, [])
    tau = tmp_path / "tau.json"
    tau.write_text(json.dumps({"task_id": 3, "reward": 0, "traj": []}, indent=2))
    report = runs_import(path=tau, fmt="openai-chat", namespace=ns, agent="bot")
    assert report.created == 0
    assert "looks like --format tau-bench" in report.rejected[0].reason


def test_records_without_an_outcome_are_reported(tmp_path):
    """Runs stored as running (no status, no score) are counted and the command says
    they will not be reflected until completed."""
    lines = [
        _chat_run([{"role": "user", "content": f"q{i}"}], id=f"open-{i}")
        for i in range(3)
    ] + [_chat_run([{"role": "user", "content": "done"}], id="done-1", reward=1)]
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    out = StringIO()
    call_command(
        "import_runs",
        str(path),
        "--format",
        "openai-chat",
        "--namespace",
        "imp-open",
        "--no-progress",
        stdout=out,
    )
    assert "3 of them have no outcome" in out.getvalue()
    assert Trajectory.objects.filter(namespace__slug="imp-open").count() == 4
