"""OpenInference spans over OTLP become runs: the real `openinference-instrumentation-
openai` instrumentor around the `openai` SDK, calling a local fake Chat Completions
server (`tests.fake_openai.FakeOpenAI` answering scripted completions, tool calls
included), exported by the OpenTelemetry SDK's OTLP exporter to a live server."""

import contextlib
import json

import openai
import pytest
from openinference.instrumentation import (
    OITracer,
    TraceConfig,
    using_session,
    using_user,
)
from openinference.instrumentation.openai import OpenAIInstrumentor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from learning.models import RunStatus, Trajectory
from tests.factories import make_token
from tests.fake_openai import FakeOpenAI

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Look up an order by its id.",
            "parameters": {
                "type": "object",
                "properties": {"order": {"type": "string"}},
                "required": ["order"],
            },
        },
    }
]


def completion(message: dict, finish_reason: str, prompt: int, completion_: int):
    """A Chat Completions response body as the OpenAI API returns it."""
    return (
        "raw",
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "gpt-4o-2024-08-06",
            "choices": [
                {"index": 0, "message": message, "finish_reason": finish_reason}
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion_,
                "total_tokens": prompt + completion_,
            },
        },
    )


TOOL_CALL = completion(
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {
                    "name": "lookup_order",
                    "arguments": json.dumps({"order": "A17"}),
                },
            }
        ],
    },
    "tool_calls",
    120,
    18,
)
FINAL = completion(
    {"role": "assistant", "content": "Order A17 was delivered; I refunded it."},
    "stop",
    190,
    12,
)


@pytest.fixture
def instrumented(live_server):
    """A tracer provider exporting OTLP/HTTP (protobuf) to the live server, the
    OpenAI instrumentor on it, and an agent token; uninstrumented afterwards."""
    token, raw = make_token(namespace="acme", role="agent", name="oi-agent")
    exporter = OTLPSpanExporter(
        endpoint=f"{live_server.url}/api/v1/otel/v1/traces",
        headers={"Authorization": f"Bearer {raw}"},
        timeout=10,
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "refunds"}))
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    yield token, provider, exporter
    instrumentor.uninstrument()
    provider.shutdown()


@contextlib.contextmanager
def chat_server(*replies):
    """The fake server answering these completions, one per request."""
    fake = FakeOpenAI().start()
    fake.script(*replies)
    try:
        yield fake
    finally:
        fake.stop()


def _agent(provider, base_url: str, task: str, *, fail: bool = False) -> str:
    """A small tool-calling agent, traced the OpenInference way: an AGENT span (the
    helpers' OITracer), the instrumented SDK's LLM spans, a TOOL span per call."""
    tracer = OITracer(provider.get_tracer("refund-agent"), config=TraceConfig())
    client = openai.OpenAI(base_url=base_url, api_key="not-a-real-key")

    @tracer.tool
    def lookup_order(order: str) -> dict:
        """Look up an order by its id."""
        return {"order": order, "status": "delivered", "note": f"api_key={SECRET}"}

    with using_session("sess-oi-1"), using_user("mia_li_3668"):
        with tracer.start_as_current_span(
            "refund-agent", openinference_span_kind="agent"
        ) as span:
            span.set_input(task)
            messages = [
                {"role": "system", "content": "You handle refunds."},
                {"role": "user", "content": task},
            ]
            while True:
                reply = client.chat.completions.create(
                    model="gpt-4o", messages=messages, tools=TOOLS
                )
                message = reply.choices[0].message
                if not message.tool_calls:
                    break
                messages.append(message.model_dump(exclude_none=True))
                for call in message.tool_calls:
                    output = lookup_order(**json.loads(call.function.arguments))
                    messages.append(
                        {
                            "role": "tool",
                            "tool_call_id": call.id,
                            "content": json.dumps(output),
                        }
                    )
            span.set_output(message.content)
            if fail:
                span.set_status(Status(StatusCode.ERROR, "refund refused"))
            return format(span.get_span_context().trace_id, "032x")


def test_openai_instrumentor_with_tool_calls_becomes_a_run(instrumented):
    """Spans exported one by one (children first) start a running run that the
    AGENT span completes: the task is the agent's input, the LLM spans are message
    steps (the tool call named in the first), the TOOL span a tool_call step with its
    arguments and redacted output; session and user come from OpenInference's
    context attributes, tokens from llm.token_count.*, the agent from the service."""
    token, provider, exporter = instrumented
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with chat_server(TOOL_CALL, FINAL) as chat:
        trace_id = _agent(provider, chat.base_url, "Refund order A17 for Mia")
        assert len(chat.requests) == 2  # the SDK really called the fake server
    run = Trajectory.objects.get(
        namespace=token.namespace, external_id=f"otel-{trace_id}"
    )
    assert run.status == RunStatus.SUCCESS and run.success_score == 1.0
    assert run.task_description == "Refund order A17 for Mia"
    assert (run.session_id, run.user_id, run.agent) == (
        "sess-oi-1",
        "mia_li_3668",
        "refunds",
    )
    assert run.tokens_used == 120 + 18 + 190 + 12
    assert run.duration_ms is not None and run.completed_at is not None
    steps = list(run.steps.order_by("index"))
    assert [(s.type, s.tool) for s in steps] == [
        ("message", ""),
        ("tool_call", "lookup_order"),
        ("message", ""),
    ]
    first, tool, last = steps
    assert first.description == 'assistant: [tool call lookup_order({"order": "A17"})]'
    assert first.result["tool_calls"] == [
        {"id": "call_1", "name": "lookup_order", "arguments": {"order": "A17"}}
    ]
    assert first.result["model"] == "gpt-4o-2024-08-06" and first.tokens == 138
    assert tool.result["arguments"] == {"order": "A17"}
    assert tool.result["output"]["status"] == "delivered"
    assert SECRET not in json.dumps(tool.result) and run.redacted
    assert last.description == "assistant: Order A17 was delivered; I refunded it."
    assert last.tokens == 202


def test_batched_export_of_a_failed_agent_and_its_retry(instrumented):
    """One batch export of a failing agent stores a failed run with its error; the
    exporter sending the same spans again changes nothing."""
    token, provider, exporter = instrumented
    captured = []
    original = exporter.export

    def export(spans):
        captured.extend(spans)
        return original(spans)

    exporter.export = export
    provider.add_span_processor(BatchSpanProcessor(exporter))
    with chat_server(TOOL_CALL, FINAL) as chat:
        trace_id = _agent(provider, chat.base_url, "Refund order A17", fail=True)
        provider.force_flush()
    run = Trajectory.objects.get(external_id=f"otel-{trace_id}")
    assert (run.status, run.error_message) == (RunStatus.FAILURE, "refund refused")
    assert run.steps.count() == 3
    assert original(captured).name == "SUCCESS"
    assert Trajectory.objects.filter(namespace=token.namespace).count() == 1
    assert run.steps.count() == 3


def test_a_bare_instrumented_call_is_a_run_of_its_own(instrumented):
    """Without an agent span, each instrumented call is its own trace: its root is
    the LLM span, so it is a finished run whose task is the user message and whose
    one step is the model's answer."""
    token, provider, exporter = instrumented
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with chat_server(FINAL) as chat:
        client = openai.OpenAI(base_url=chat.base_url, api_key="x")
        client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "Is order A17 refundable?"}],
        )
    run = Trajectory.objects.get(namespace=token.namespace)
    assert run.status == RunStatus.SUCCESS
    assert run.task_description == "Is order A17 refundable?"
    assert [s.type for s in run.steps.all()] == ["message"]
    assert run.tokens_used == 202
