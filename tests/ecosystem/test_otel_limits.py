"""Issue 15 item 6 for OTLP: bad input is a 4xx naming the field or attribute, never
a 500, never a misleading message, and the REST API's limits hold for OTLP too (one
set, `learning.limits`). Errors are OTLP Status bodies in the request's encoding."""

import json

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from learning.limits import MAX_JSON_DEPTH, MAX_RUNS_PER_BATCH, MAX_STEPS_PER_RUN
from learning.models import Step, Trajectory
from tests.ecosystem.otlp import error_message, export, new_id, post, span, value

pytestmark = pytest.mark.django_db

TOOL = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup"}


def _refused(client, body, *needles, content_type="application/json"):
    response = post(client, body, content_type=content_type)
    assert response.status_code == 400, response.content
    message = error_message(response)
    for needle in needles:
        assert needle in message, message
    assert "time zone" not in message
    assert Trajectory.objects.count() == 0 and Step.objects.count() == 0
    return message


def _agent(trace, attributes=None, **kwargs):
    return span(
        trace,
        "invoke_agent",
        {"gen_ai.operation.name": "invoke_agent", **(attributes or {})},
        **kwargs,
    )


def test_a_body_nested_10k_deep_is_400(agent_client):
    body = '{"resourceSpans": ' + "[" * 10_000 + "]" * 10_000 + "}"
    _refused(agent_client, body, "body", "nested too deeply")


def test_a_kvlist_nested_10k_deep_is_400(agent_client):
    opening = '{"kvlistValue": {"values": [{"key": "k", "value": '
    deep = opening * 10_000 + '{"stringValue": "bottom"}' + "}]}}" * 10_000
    body = json.dumps(export(_agent(new_id()))).replace(
        '"attributes": [',
        '"attributes": [{"key": "gen_ai.deep", "value": %s}, ' % deep,
        1,
    )
    _refused(agent_client, body, "nested too deeply")


def test_a_kvlist_past_the_json_depth_limit_names_the_attribute(agent_client):
    deep = {"stringValue": "bottom"}
    for _ in range(MAX_JSON_DEPTH + 5):
        deep = {"kvlistValue": {"values": [{"key": "k", "value": deep}]}}
    trace = new_id()
    root = _agent(trace)
    root["attributes"].append({"key": "gen_ai.deep", "value": deep})
    _refused(
        agent_client,
        export(root),
        '.attributes["gen_ai.deep"]',
        f"nested deeper than {MAX_JSON_DEPTH} levels",
    )


@pytest.mark.parametrize("depth", [500, 10_000])
def test_tool_arguments_nested_deep_are_400_naming_the_attribute(agent_client, depth):
    """JSON inside gen_ai.tool.call.arguments nested 500 deep used to be stored, and
    10k deep was a 500."""
    trace, root = new_id(), new_id(8)
    arguments = "[" * depth + "]" * depth
    _refused(
        agent_client,
        export(
            _agent(trace, span_id=root),
            span(
                trace,
                "execute_tool",
                {**TOOL, "gen_ai.tool.call.arguments": arguments},
                parent=root,
            ),
        ),
        f"trace {trace}",
        '"gen_ai.tool.call.arguments"',
        "nested deeper",
    )


def test_a_lone_surrogate_in_an_attribute_names_it(agent_client):
    trace = new_id()
    body = json.dumps(export(_agent(trace, {"gen_ai.agent.name": "\ud800"})))
    assert "\\ud800" in body
    _refused(agent_client, body, '["gen_ai.agent.name"]', "surrogate")


def test_a_nul_in_an_attribute_names_it(agent_client):
    trace = new_id()
    _refused(
        agent_client,
        export(_agent(trace, {"flywheel.task_description": "a\x00b"})),
        '["flywheel.task_description"]',
        "Null characters",
    )


def test_a_nul_in_a_protobuf_span_name_names_it(agent_client):
    request = ExportTraceServiceRequest()
    pb = request.resource_spans.add().scope_spans.add().spans.add()
    pb.trace_id, pb.span_id, pb.name = b"\x01" * 16, b"\x02" * 8, "invoke_agent\x00"
    attribute = pb.attributes.add()
    attribute.key, attribute.value.string_value = (
        "gen_ai.operation.name",
        "invoke_agent",
    )
    _refused(
        agent_client,
        request.SerializeToString(),
        "spans[0].name",
        "Null characters",
        content_type="application/x-protobuf",
    )


def test_a_huge_integer_attribute_names_it(agent_client):
    trace = new_id()
    root = _agent(trace)
    root["attributes"].append(
        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": str(10**30)}}
    )
    _refused(
        agent_client, export(root), '["gen_ai.usage.input_tokens"]', "64-bit integer"
    )


def test_a_token_count_over_the_column_names_span_and_field(agent_client):
    """Within int64 but over the step's tokens column: the REST rule, named."""
    trace, root = new_id(), new_id(8)
    chat = span(
        trace,
        "chat",
        {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 2**40},
        parent=root,
    )
    _refused(
        agent_client,
        export(_agent(trace, span_id=root), chat),
        f"trace {trace}",
        f"span {chat['spanId']}",
        "tokens: Ensure this value is less than or equal to",
    )


@pytest.mark.parametrize("start", [10**30, -(10**20)])
def test_start_times_out_of_range_name_the_field(agent_client, start):
    trace = new_id()
    root = _agent(trace)
    root["startTimeUnixNano"] = str(start)
    _refused(
        agent_client,
        export(root),
        "startTimeUnixNano",
        "unsigned 64-bit integer of nanoseconds",
    )


def test_the_latest_time_otlp_can_say_is_stored(agent_client):
    """2**64-1 ns is in 2554: a real date, stored."""
    trace = new_id()
    root = _agent(trace, {"flywheel.task_description": "far future"})
    root["startTimeUnixNano"] = root["endTimeUnixNano"] = str(2**64 - 1)
    response = post(agent_client, export(root))
    assert response.status_code == 200, response.content
    assert Trajectory.objects.get().started_at.year == 2554


def test_more_spans_of_one_trace_than_the_step_limit_are_refused(agent_client):
    """6,000 spans of one trace in one export used to become 6,000 steps; the REST
    limit of steps per request holds."""
    trace, root = new_id(), new_id(8)
    spans = [_agent(trace, span_id=root)] + [
        span(trace, "execute_tool", TOOL, parent=root, start_ms=i)
        for i in range(MAX_STEPS_PER_RUN + 1000)
    ]
    _refused(
        agent_client,
        export(*spans),
        f"trace {trace}",
        f"At most {MAX_STEPS_PER_RUN} steps per request",
    )


def test_more_new_traces_than_the_batch_limit_are_refused(agent_client):
    spans = [
        span(new_id(), "chat", {"gen_ai.operation.name": "chat"})
        for _ in range(MAX_RUNS_PER_BATCH + 1)
    ]
    _refused(agent_client, export(*spans), str(MAX_RUNS_PER_BATCH), "new traces")


def test_an_invalid_flywheel_attribute_is_named(agent_client):
    trace = new_id()
    _refused(
        agent_client,
        export(_agent(trace, {"flywheel.success_score": 1.5})),
        "success_score (attribute flywheel.success_score)",
        "less than or equal to 1.0",
    )


def test_one_bad_trace_stores_nothing_of_the_export(agent_client):
    good, bad = new_id(), new_id()
    _refused(
        agent_client,
        export(_agent(good), _agent(bad, {"flywheel.status": "done"})),
        f"trace {bad}",
        "status (attribute flywheel.status)",
    )


def test_protobuf_errors_are_protobuf_status_and_json_errors_json(agent_client, client):
    """OTLP/HTTP: a 4xx body is a google.rpc.Status in the request's encoding,
    authentication failures included."""
    response = post(agent_client, b"\xff\xff", content_type="application/x-protobuf")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/x-protobuf"
    assert "protobuf" in error_message(response)
    anonymous = post(client, b"", content_type="application/x-protobuf")
    assert anonymous.status_code == 401
    assert "credentials" in error_message(anonymous).lower()
    response = post(agent_client, b"[]")
    assert response.status_code == 400
    assert response.json()["code"] == 3
    assert "resourceSpans" in error_message(response)


WEIRD = [None, "", "x", 0, -1, 2.5, True, [1, "a"], {"a": {"b": 1}}, "[", "{}", "[1]"]
KEYS = [
    "gen_ai.operation.name",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.tool.name",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "gen_ai.usage.input_tokens",
    "gen_ai.response.finish_reasons",
    "gen_ai.evaluation.name",
    "gen_ai.evaluation.score.value",
    "openinference.span.kind",
    "input.value",
    "output.value",
    "llm.input_messages.0.message.content",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments",
    "llm.token_count.prompt",
    "llm.cost.total",
    "retrieval.documents.0.document.score",
    "tool.name",
    "session.id",
    "flywheel.playbook_versions",
    "flywheel.feedback_type",
]


@pytest.mark.parametrize("key", KEYS)
def test_odd_attribute_values_never_500(agent_client, key):
    """Every attribute the mapping reads, with values of every odd type and shape,
    on roots and on spans of every kind (one trace each, one export per attribute):
    an answer below 500."""
    spans = []
    for kind in ("AGENT", "LLM", "TOOL", "RETRIEVER", "CHAIN", "EVALUATOR"):
        for weird in WEIRD:
            trace, root = new_id(), new_id(8)
            odd = {"key": key, "value": {} if weird is None else value(weird)}
            child = span(trace, "child", {"openinference.span.kind": kind}, parent=root)
            parent = _agent(trace, span_id=root)
            for each in (child, parent):
                each["attributes"].append(odd)
            spans += [parent, child]
    response = post(agent_client, export(*spans))
    assert response.status_code < 500, response.content
