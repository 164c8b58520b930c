"""OpenTelemetry ingest: real OTel SDK spans exported over OTLP/HTTP become runs."""

import base64
import gzip
import json

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from learning.models import RunStatus, Trajectory
from tests.ecosystem.otlp import error_message
from tests.factories import make_token

pytestmark = pytest.mark.django_db

SECRET = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345"


def _provider(live_server, raw: str, *, batch: bool, compression=Compression.Gzip):
    exporter = OTLPSpanExporter(
        endpoint=f"{live_server.url}/api/v1/otel/v1/traces",
        headers={"Authorization": f"Bearer {raw}"},
        compression=compression,
        timeout=10,
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    return provider, exporter


def _agent_trace(tracer, *, fail: bool = False) -> str:
    """One agent run in the GenAI conventions: a chat, a tool call, a final chat."""
    with tracer.start_as_current_span(
        "invoke_agent airline-agent",
        kind=SpanKind.CLIENT,
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "airline-agent",
            "gen_ai.conversation.id": "conv-42",
            "user.id": "mia_li_3668",
            "flywheel.task_type": "airline.change_flight",
            "flywheel.playbook_versions": ["airline@3"],
        },
    ) as root:
        with tracer.start_as_current_span(
            "chat claude-sonnet-4-5",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "claude-sonnet-4-5",
                "gen_ai.usage.input_tokens": 120,
                "gen_ai.usage.output_tokens": 30,
                "gen_ai.input.messages": json.dumps(
                    [
                        {
                            "role": "user",
                            "parts": [
                                {
                                    "type": "text",
                                    "content": "Change the flight of reservation 4WQ150",
                                }
                            ],
                        }
                    ]
                ),
                "gen_ai.output.messages": json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [
                                {"type": "text", "content": "Let me look it up."}
                            ],
                        }
                    ]
                ),
            },
        ):
            pass
        with tracer.start_as_current_span(
            "execute_tool get_reservation_details",
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "get_reservation_details",
                "gen_ai.tool.call.id": "toolu_1",
                "gen_ai.tool.call.arguments": json.dumps({"reservation_id": "4WQ150"}),
                "gen_ai.tool.call.result": json.dumps(
                    {"cabin": "basic_economy", "note": f"api_key={SECRET}"}
                ),
            },
        ):
            pass
        with tracer.start_as_current_span(
            "chat claude-sonnet-4-5",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.usage.input_tokens": 200,
                "gen_ai.usage.output_tokens": 50,
            },
        ):
            pass
        if fail:
            root.set_status(Status(StatusCode.ERROR, "tool refused the change"))
        return format(root.get_span_context().trace_id, "032x")


@pytest.mark.django_db(transaction=True)
def test_sdk_exporter_spans_become_a_run_with_steps(live_server):
    """Spans exported one by one (SimpleSpanProcessor, gzip protobuf) arrive before
    their agent span; the run is created as running, then completed by the agent span,
    with tool_call and message steps, token usage, session and redacted secrets."""
    token, raw = make_token(namespace="acme", role="agent", name="otel-agent")
    provider, _ = _provider(live_server, raw, batch=False)
    trace_id = _agent_trace(provider.get_tracer("test"))
    provider.shutdown()

    run = Trajectory.objects.get(
        namespace=token.namespace, external_id=f"otel-{trace_id}"
    )
    assert run.status == RunStatus.SUCCESS
    assert run.success_score == 1.0
    assert run.task_description == "Change the flight of reservation 4WQ150"
    assert run.task_type == "airline.change_flight"
    assert run.session_id == "conv-42"
    assert run.user_id == "mia_li_3668"
    assert run.agent == "airline-agent"
    assert run.playbook_versions == ["airline@3"]
    assert run.tokens_used == 400
    steps = list(run.steps.order_by("index"))
    assert [s.type for s in steps] == ["message", "tool_call", "message"]
    assert steps[0].description == "assistant: Let me look it up."
    assert steps[0].tokens == 150
    assert steps[1].tool == "get_reservation_details"
    assert steps[1].result["arguments"] == {"reservation_id": "4WQ150"}
    assert SECRET not in json.dumps(steps[1].result)
    assert run.redacted is True


@pytest.mark.django_db(transaction=True)
def test_batched_export_of_a_failed_run_and_reexport_is_idempotent(live_server):
    """A batch export (uncompressed) of a failing agent span stores a failed run once;
    sending the same spans again changes nothing."""
    token, raw = make_token(namespace="acme", role="agent", name="otel-agent")
    provider, exporter = _provider(
        live_server, raw, batch=True, compression=Compression.NoCompression
    )
    captured = []
    original = exporter.export

    def export(spans):
        captured.extend(spans)
        return original(spans)

    exporter.export = export
    trace_id = _agent_trace(provider.get_tracer("test"), fail=True)
    provider.force_flush()
    run = Trajectory.objects.get(
        namespace=token.namespace, external_id=f"otel-{trace_id}"
    )
    assert run.status == RunStatus.FAILURE
    assert run.success_score == 0.0
    assert run.error_message == "tool refused the change"
    assert run.steps.count() == 3

    assert original(captured).name == "SUCCESS"  # the exporter retrying a batch
    provider.shutdown()
    assert Trajectory.objects.filter(namespace=token.namespace).count() == 1
    assert run.steps.count() == 3


def _json_trace(trace_id="5b8efff798038103d269b633813fc60c"):
    def attr(key, value):
        if isinstance(value, int):
            return {"key": key, "value": {"intValue": str(value)}}
        return {"key": key, "value": {"stringValue": value}}

    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [attr("service.name", "json-bot")]},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": "eee19b7ec3c1b174",
                                "name": "invoke_agent",
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000002500000000",
                                "attributes": [
                                    attr("gen_ai.operation.name", "invoke_agent"),
                                    attr(
                                        "flywheel.task_description",
                                        f"Rotate key password={SECRET}",
                                    ),
                                    attr("gen_ai.conversation.id", "c-1"),
                                ],
                                "status": {"code": 1},
                            },
                            {
                                "traceId": trace_id,
                                "spanId": "eee19b7ec3c1b175",
                                "parentSpanId": "eee19b7ec3c1b174",
                                "name": "chat gpt",
                                "startTimeUnixNano": "1700000000100000000",
                                "endTimeUnixNano": "1700000001000000000",
                                "attributes": [
                                    attr("gen_ai.operation.name", "chat"),
                                    attr("gen_ai.usage.input_tokens", 10),
                                    attr("gen_ai.usage.output_tokens", 5),
                                ],
                            },
                            {
                                "traceId": trace_id,
                                "spanId": "aaa19b7ec3c1b176",
                                "name": "GET /health",
                                "startTimeUnixNano": "1700000000100000000",
                                "endTimeUnixNano": "1700000001000000000",
                            },
                        ]
                    }
                ],
            }
        ]
    }


def test_json_encoding_gzip_maps_and_redacts(agent_client):
    """An OTLP JSON body (hex ids, string int64s), gzip-compressed, maps to a run whose
    description is redacted; a span of no convention in the trace is a plain step."""
    body = gzip.compress(json.dumps(_json_trace()).encode())
    response = agent_client.generic(
        "POST",
        "/api/v1/otel/v1/traces",
        body,
        content_type="application/json",
        HTTP_CONTENT_ENCODING="gzip",
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"partialSuccess": {}}
    run = Trajectory.objects.get(external_id="otel-5b8efff798038103d269b633813fc60c")
    assert SECRET not in run.task_description and "[REDACTED]" in run.task_description
    assert run.duration_ms == 2500
    assert run.session_id == "c-1"
    assert run.tokens_used == 15
    steps = list(run.steps.order_by("index"))
    # A span of no convention inside an agent's trace is kept as a step, not dropped.
    assert [(s.type, s.description) for s in steps] == [
        ("message", "chat"),
        ("action", "GET /health"),
    ]
    assert steps[1].result["kind"] == "span"


def test_json_ids_in_base64_are_accepted_too(agent_client):
    """Trace ids sent in proto3's base64 JSON form (some SDKs do) map to the same
    hex external id."""
    trace = _json_trace()
    b64 = base64.b64encode(bytes.fromhex("5b8efff798038103d269b633813fc60c")).decode()
    for span in trace["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        span["traceId"] = b64
    response = agent_client.generic(
        "POST",
        "/api/v1/otel/v1/traces",
        json.dumps(trace),
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    assert Trajectory.objects.filter(
        external_id="otel-5b8efff798038103d269b633813fc60c"
    ).exists()


@pytest.mark.parametrize(
    ("body", "content_type", "status", "needle"),
    [
        (b"{not json", "application/json", 400, "body"),
        (
            json.dumps(
                {
                    "resourceSpans": [
                        {"scopeSpans": [{"spans": [{"traceId": "zz", "spanId": "01"}]}]}
                    ]
                }
            ).encode(),
            "application/json",
            400,
            "traceId",
        ),
        (b"\xff\xff\xff", "application/x-protobuf", 400, "protobuf"),
        (b"a,b", "text/csv", 415, "text/csv"),
    ],
)
def test_bad_bodies_get_4xx_naming_the_problem(
    agent_client, body, content_type, status, needle
):
    """Malformed OTLP bodies are refused with a 4xx JSON error, never a 500."""
    response = agent_client.generic(
        "POST", "/api/v1/otel/v1/traces", body, content_type=content_type
    )
    assert response.status_code == status
    assert needle in error_message(response)
    assert Trajectory.objects.count() == 0


def test_needs_a_token(client):
    """Like the rest of the API, the endpoint needs a bearer token."""
    response = client.generic(
        "POST",
        "/api/v1/otel/v1/traces",
        json.dumps(_json_trace()),
        content_type="application/json",
    )
    assert response.status_code == 401
    assert Trajectory.objects.count() == 0


def test_gzip_bomb_is_refused_with_413(agent_client, settings):
    """A small gzip body that expands past the body limit gets 413."""
    settings.FLYWHEEL_MAX_BODY_BYTES = 10_000
    body = gzip.compress(b" " * 100_000)
    response = agent_client.generic(
        "POST",
        "/api/v1/otel/v1/traces",
        body,
        content_type="application/json",
        HTTP_CONTENT_ENCODING="gzip",
    )
    assert response.status_code == 413
