"""Reflection on an OpenAI-compatible server through the real `openai` SDK against a
local fake Chat Completions API: the same prompt and schema as Claude, a forced
function call, the JSON-schema fallback for servers without tools, batch reflection,
and the offline fallback on every kind of failure; and how the reflector is chosen."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from learning.models import LearningCandidate
from learning.reflectors import reflector_get
from learning.reflectors.claude import ClaudeReflector
from learning.reflectors.offline import OfflineReflector
from learning.reflectors.openai_compat import OpenAICompatibleReflector
from learning.reflectors.prompt import REFLECTION_SCHEMA, SYSTEM_PROMPT, TOOL_NAME
from learning.services.batch import batch_reflect
from learning.services.reflection import run_reflect, run_view
from tests.factories import NamespaceFactory, StepFactory, TrajectoryFactory
from tests.fake_openai import FakeOpenAI, default_answer

pytestmark = pytest.mark.django_db


@pytest.fixture
def fake():
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def compat(fake, settings):
    """FLYWHEEL_REFLECTOR=openai against the fake: a local server needs no key."""
    settings.FLYWHEEL_REFLECTOR = "openai"
    settings.OPENAI_BASE_URL = fake.base_url
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_MODEL = "local-model"
    settings.OPENAI_TIMEOUT = 1.0
    settings.OPENAI_MAX_RETRIES = 0
    settings.OPENAI_BATCH_WAIT = 30
    return settings


def failed_run(**kwargs):
    run = TrajectoryFactory(
        status="failure",
        success_score=0.0,
        reflection_status="pending",
        task_type="retail.refund",
        task_description="Refund the broken lamp",
        error_message="refund failed: payment method not found",
        **kwargs,
    )
    StepFactory(trajectory=run, index=0, type="message", description="user: refund it")
    StepFactory(
        trajectory=run,
        index=1,
        tool="refund",
        description='refund({"order_id": "W123", "payment": "card"})',
    )
    StepFactory(
        trajectory=run,
        index=2,
        type="observation",
        description="Error: payment method not found",
    )
    return run


def test_a_forced_function_call_becomes_candidates(fake, compat):
    """The same system prompt and schema as the Claude reflector, a forced function
    call; its lessons are stored, with the model's name and the token counts."""
    run = failed_run()
    reflection = run_reflect(run_id=run.pk)
    assert not reflection.fallback and reflection.reflector == "local-model"
    (request,) = fake.requests
    body = request["body"]
    assert body["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert "<run_data>" in body["messages"][1]["content"]
    assert body["tools"][0]["function"]["name"] == TOOL_NAME
    assert body["tools"][0]["function"]["parameters"] == REFLECTION_SCHEMA
    assert body["tool_choice"] == {"type": "function", "function": {"name": TOOL_NAME}}
    assert request["headers"]["authorization"] == "Bearer unused"  # no key needed
    assert reflection.input_tokens > 1000 and reflection.output_tokens == 200
    candidate = LearningCandidate.objects.get()
    assert candidate.content == (
        "When the user asks for a refund, call `the_tool` to read the order's payment "
        "method first."
    )
    assert candidate.evidence.get().trajectory_id == run.pk
    assert "Root cause" in next(
        o["description"] for o in reflection.observations if o["kind"] == "diagnosis"
    )


def test_the_api_key_is_sent_when_set(fake, compat):
    """A server that needs a key gets it as a bearer token."""
    compat.OPENAI_API_KEY = "sk-local"
    fake.required_key = "sk-local"
    assert not run_reflect(run_id=failed_run().pk).fallback


def test_a_server_without_tools_answers_through_the_json_schema(fake, compat):
    """A 400 to `tools` is answered again with a JSON-schema response_format; the
    reflector then asks that way directly."""
    fake.reject_tools = True
    first = run_reflect(run_id=failed_run().pk)
    assert not first.fallback
    refused, answered = fake.requests
    assert "tools" in refused["body"]
    assert answered["body"]["response_format"]["type"] == "json_schema"
    assert answered["body"]["response_format"]["json_schema"]["schema"] == (
        REFLECTION_SCHEMA
    )
    assert LearningCandidate.objects.filter(content__contains="payment method").exists()
    reflector = OpenAICompatibleReflector()
    reflector.reflect(run=run_view(failed_run()), peers=[])
    reflector.reflect(run=run_view(failed_run()), peers=[])
    assert [("tools" in r["body"]) for r in fake.requests[2:]] == [True, False, False]


@pytest.mark.parametrize(
    "answer",
    [
        ("tool_raw", '{"diagnosis": {"what_happened": "x"'),
        ("content", "The agent should be more careful."),
        ("tool", {"lessons": default_answer({})["lessons"]}),
        (
            "tool",
            dict(default_answer({}), lessons=[{"kind": "wisdom", "confidence": 2}]),
        ),
        ("status", 500),
        ("status", 429),
        ("sleep", 2.5),
    ],
    ids=["broken-json", "prose", "no-diagnosis", "bad-lesson", "500", "429", "timeout"],
)
def test_any_failure_stores_the_offline_result_as_fallback(fake, compat, answer):
    """Malformed output, an HTTP error or a timeout: the offline lessons are stored,
    marked as a fallback with the reason, and the run counts as reflected."""
    fake.script(answer)
    run = failed_run()
    reflection = run_reflect(run_id=run.pk)
    assert reflection.fallback and reflection.reflector == "offline"
    assert reflection.fallback_reason
    run.refresh_from_db()
    assert run.reflection_status == "reflected"
    assert run.reflection_error.startswith("fallback:")


def test_a_wrong_key_falls_back_with_the_sdk_error(fake, compat):
    fake.required_key = "sk-right"
    reflection = run_reflect(run_id=failed_run().pk)
    assert reflection.fallback and "AuthenticationError" in reflection.fallback_reason


def test_batch_reflection_reflects_run_by_run(fake, compat):
    """Without a batch API each run is one request; lessons found in every run are one
    candidate with all of them as evidence."""
    ns = NamespaceFactory()
    runs = [failed_run(namespace=ns) for _ in range(3)]
    batch = batch_reflect(namespace_id=ns.pk, task_type=runs[0].task_type)
    assert len(fake.requests) == 3
    assert not batch.fallback and batch.reflector == "local-model"
    assert batch.helpful_strategies[0]["frequency"] == 3
    assert LearningCandidate.objects.get(reflection=batch).evidence.count() == 3


def test_a_batch_with_no_answer_falls_back_to_the_offline_batch(fake, compat):
    ns = NamespaceFactory()
    runs = [failed_run(namespace=ns) for _ in range(2)]
    fake.script(("status", 500), ("status", 500))
    batch = batch_reflect(namespace_id=ns.pk, task_type=runs[0].task_type)
    assert batch.fallback and "InternalServerError" in batch.fallback_reason


def test_the_reflector_is_chosen_by_settings(settings):
    """FLYWHEEL_REFLECTOR picks; unset, Claude when ANTHROPIC_API_KEY is set, else the
    offline reflector."""
    settings.FLYWHEEL_REFLECTOR = ""
    settings.ANTHROPIC_API_KEY = ""
    assert isinstance(reflector_get(), OfflineReflector)
    settings.ANTHROPIC_API_KEY = "sk-ant"
    assert isinstance(reflector_get(), ClaudeReflector)
    settings.FLYWHEEL_REFLECTOR = "offline"
    assert isinstance(reflector_get(), OfflineReflector)
    settings.FLYWHEEL_REFLECTOR = "openai"
    assert isinstance(reflector_get(), OpenAICompatibleReflector)
    settings.FLYWHEEL_REFLECTOR = "claude"
    assert isinstance(reflector_get(), ClaudeReflector)


def test_an_unknown_reflector_name_stops_the_settings():
    """A typo in FLYWHEEL_REFLECTOR is refused when the settings load, not at the
    first reflection."""
    env = dict(
        os.environ, FLYWHEEL_REFLECTOR="gpt", DJANGO_SETTINGS_MODULE="config.settings"
    )
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode != 0
    assert "FLYWHEEL_REFLECTOR must be offline, claude or openai" in result.stderr
