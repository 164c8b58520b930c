"""How OTLP spans map to runs and steps: OpenInference kinds, the precedence of
flywheel.* over gen_ai.* over framework attributes, shapes of no convention, runs
built over several exports, and spans that arrive after their run finished."""

import pytest

from learning.models import RunStatus, Trajectory
from tests.ecosystem.otlp import event, export, new_id, partial_message, post, span

pytestmark = pytest.mark.django_db


def _run(trace_id: str) -> Trajectory:
    return Trajectory.objects.get(external_id=f"otel-{trace_id}")


def _post_ok(client, *spans, **kwargs):
    response = post(client, export(*spans, **kwargs))
    assert response.status_code == 200, response.content
    return response


def test_openinference_agent_llm_and_failing_tool(agent_client):
    """An OpenInference AGENT span is the run (input.value the task, session.id and
    user.id its identity); an LLM span is a message step with llm.token_count.*; a
    TOOL span whose status is ERROR is a tool_call step carrying the error."""
    trace, root = new_id(), new_id(8)
    _post_ok(
        agent_client,
        span(
            trace,
            "agent",
            {
                "openinference.span.kind": "AGENT",
                "input.value": "Find the zanzibar order and refund it",
                "output.value": "Refunded.",
                "session.id": "oi-1",
                "user.id": "u-oi",
            },
            span_id=root,
            end_ms=9,
        ),
        span(
            trace,
            "ChatCompletion",
            {
                "openinference.span.kind": "LLM",
                "llm.model_name": "gpt-4o",
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": "Find the zanzibar order",
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.content": "Looking it up.",
                "llm.token_count.prompt": 120,
                "llm.token_count.completion": 8,
                "llm.cost.total": 0.0015,
            },
            parent=root,
            start_ms=1,
            end_ms=3,
        ),
        span(
            trace,
            "lookup_order",
            {
                "openinference.span.kind": "TOOL",
                "tool.name": "lookup_order",
                "input.value": '{"order": "zanzibar"}',
                "output.value": "Error: order not found",
            },
            parent=root,
            start_ms=4,
            end_ms=5,
            status=2,
            message="order not found",
        ),
    )
    run = _run(trace)
    assert run.status == RunStatus.SUCCESS
    assert run.task_description == "Find the zanzibar order and refund it"
    assert (run.session_id, run.user_id, run.agent) == ("oi-1", "u-oi", "oi-bot")
    assert (run.tokens_used, run.cost_usd, run.duration_ms) == (128, 0.0015, 9)
    llm, tool = run.steps.order_by("index")
    assert (llm.type, llm.description, llm.tokens) == (
        "message",
        "assistant: Looking it up.",
        128,
    )
    assert llm.result["model"] == "gpt-4o"
    assert (tool.type, tool.tool) == ("tool_call", "lookup_order")
    assert tool.description == 'lookup_order({"order": "zanzibar"})'
    assert tool.result["arguments"] == {"order": "zanzibar"}
    assert tool.result["output"] == "Error: order not found"
    assert tool.result["error"] == "order not found"


def test_flywheel_attributes_win_over_gen_ai_which_win_over_openinference(
    agent_client,
):
    """Langfuse's precedence: flywheel.* first, then gen_ai.*, then OpenInference,
    for the task, session, user and agent alike."""
    both = {
        "openinference.span.kind": "AGENT",
        "gen_ai.operation.name": "invoke_agent",
        "input.value": "the OpenInference task",
        "gen_ai.input.messages": '[{"role": "user", "parts": [{"type": "text", '
        '"content": "the GenAI task"}]}]',
        "session.id": "oi-session",
        "gen_ai.conversation.id": "genai-session",
        "agent.name": "oi-agent",
        "gen_ai.agent.name": "genai-agent",
    }
    trace = new_id()
    _post_ok(agent_client, span(trace, "invoke_agent", both))
    run = _run(trace)
    assert (run.task_description, run.session_id, run.agent) == (
        "the GenAI task",
        "genai-session",
        "genai-agent",
    )
    own = {
        "flywheel.task_description": "the Flywheel task",
        "flywheel.session_id": "fw-session",
        "flywheel.user_id": "fw-user",
        "flywheel.agent": "fw-agent",
        "flywheel.task_type": "refunds.order",
        "user.id": "oi-user",
    }
    trace = new_id()
    _post_ok(agent_client, span(trace, "invoke_agent", {**both, **own}))
    run = _run(trace)
    assert (run.task_description, run.session_id, run.user_id, run.agent) == (
        "the Flywheel task",
        "fw-session",
        "fw-user",
        "fw-agent",
    )
    assert run.task_type == "refunds.order"
    del both["gen_ai.operation.name"], both["gen_ai.input.messages"]
    del both["gen_ai.conversation.id"], both["gen_ai.agent.name"]
    trace = new_id()
    _post_ok(agent_client, span(trace, "agent", both))
    run = _run(trace)
    assert (run.task_description, run.session_id, run.agent) == (
        "the OpenInference task",
        "oi-session",
        "oi-agent",
    )


def test_every_openinference_kind_and_unknown_shapes_are_steps(agent_client):
    """A LangChain-like CHAIN root is the run; nested CHAIN, RETRIEVER, RERANKER,
    EMBEDDING, GUARDRAIL, PROMPT and UNKNOWN spans and a span of no convention (an
    HTTP call) are stored as steps, never dropped."""
    trace, root = new_id(), new_id(8)
    child = {"parent": root}
    spans = [
        span(
            trace,
            "AgentExecutor",
            {
                "openinference.span.kind": "CHAIN",
                "input.value": '{"input": "Which plan fits a family of four?"}',
                "input.mime_type": "application/json",
                "output.value": '{"output": "The family plan."}',
            },
            span_id=root,
            end_ms=20,
        ),
        span(
            trace,
            "RunnableSequence",
            {"openinference.span.kind": "CHAIN", "output.value": "parsed"},
            start_ms=1,
            **child,
        ),
        span(
            trace,
            "retrieve",
            {
                "openinference.span.kind": "RETRIEVER",
                "input.value": "family plans",
                "retrieval.documents.0.document.id": "doc-1",
                "retrieval.documents.0.document.content": "Family plan: 4 lines",
                "retrieval.documents.0.document.score": 0.92,
                "retrieval.documents.1.document.id": "doc-2",
            },
            start_ms=2,
            **child,
        ),
        span(
            trace,
            "rerank",
            {
                "openinference.span.kind": "RERANKER",
                "reranker.query": "family plans",
                "reranker.output_documents.0.document.id": "doc-1",
            },
            start_ms=3,
            **child,
        ),
        span(
            trace,
            "embed",
            {
                "openinference.span.kind": "EMBEDDING",
                "embedding.model_name": "text-embedding-3-small",
                "embedding.embeddings.0.embedding.text": "family plans",
                "embedding.embeddings.0.embedding.vector": [0.1, 0.2, 0.3],
            },
            start_ms=4,
            **child,
        ),
        span(
            trace,
            "moderation",
            {"openinference.span.kind": "GUARDRAIL", "output.value": "allowed"},
            start_ms=5,
            **child,
        ),
        span(
            trace,
            "template",
            {"openinference.span.kind": "PROMPT"},
            start_ms=6,
            **child,
        ),
        span(
            trace,
            "mystery",
            {"openinference.span.kind": "UNKNOWN"},
            start_ms=7,
            **child,
        ),
        span(
            trace,
            "GET /plans",
            {"http.request.method": "GET", "http.response.status_code": 200},
            start_ms=8,
            **child,
        ),
    ]
    _post_ok(agent_client, *spans)
    run = _run(trace)
    assert run.status == RunStatus.SUCCESS
    assert run.task_description == "Which plan fits a family of four?"
    steps = list(run.steps.order_by("index"))
    assert [(s.type, s.description) for s in steps] == [
        ("action", "RunnableSequence: parsed"),
        (
            "observation",
            "retrieve: retrieved 2 documents for: family plans",
        ),
        ("observation", "rerank: reranked to 1 documents for: family plans"),
        ("action", "embed"),
        ("decision", "moderation: allowed"),
        ("action", "template"),
        ("action", "mystery"),
        ("action", "GET /plans"),
    ]
    retrieved = steps[1].result["documents"]
    assert retrieved[0] == {
        "id": "doc-1",
        "score": 0.92,
        "content": "Family plan: 4 lines",
        "metadata": None,
    }
    embed = steps[3].result["attributes"]
    assert "embedding.embeddings.0.embedding.vector" not in embed
    assert embed["embedding.model_name"] == "text-embedding-3-small"
    assert steps[7].result["kind"] == "span"
    assert steps[7].result["attributes"]["http.response.status_code"] == 200


def test_children_first_then_the_agent_span_completes_the_run(agent_client):
    """Spans exported before their agent span start a running run (a placeholder
    task until something says the task); the agent span's export sets the task,
    identity and outcome — redacted — and the tokens count every stored step."""
    trace, root = new_id(), new_id(8)
    _post_ok(
        agent_client,
        span(
            trace,
            "ChatCompletion",
            {"openinference.span.kind": "LLM", "llm.token_count.total": 40},
            parent=root,
            start_ms=1,
        ),
    )
    run = _run(trace)
    assert run.status == RunStatus.RUNNING
    assert "agent span not received yet" in run.task_description
    _post_ok(
        agent_client,
        span(
            trace,
            "lookup",
            {"openinference.span.kind": "TOOL", "tool.name": "lookup"},
            parent=root,
            start_ms=2,
        ),
        span(
            trace,
            "agent",
            {
                "openinference.span.kind": "AGENT",
                "input.value": "Rotate the key password=hunter2-secret",
                "session.id": "s-late",
                "flywheel.status": "partial",
                "flywheel.success_score": 0.5,
                "flywheel.playbook_versions": "support@2, billing@1",
            },
            span_id=root,
            end_ms=10,
        ),
    )
    run.refresh_from_db()
    assert (run.status, run.success_score) == (RunStatus.PARTIAL, 0.5)
    assert run.task_description == "Rotate the key password=[REDACTED]"
    assert run.redacted and run.session_id == "s-late"
    assert run.playbook_versions == ["support@2", "billing@1"]
    assert run.tokens_used == 40
    assert [s.type for s in run.steps.order_by("index")] == ["message", "tool_call"]


def test_late_spans_are_attached_and_named_in_the_answer(agent_client):
    """15.9: a span arriving after its run finished is appended to the run as a late
    step, and the OTLP answer's partial-success message names the trace and the
    run; sending it again adds nothing and says nothing. The span around the agent
    span (an HTTP request, the trace's root) is not a step of the run."""
    trace, http, root = new_id(), new_id(8), new_id(8)
    first = _post_ok(
        agent_client,
        span(
            trace,
            "invoke_agent support",
            {"gen_ai.operation.name": "invoke_agent", "flywheel.task_description": "t"},
            span_id=root,
            parent=http,
            end_ms=5,
        ),
    )
    assert partial_message(first) == ""
    run = _run(trace)
    assert run.status == RunStatus.SUCCESS and run.steps.count() == 0
    late = span(
        trace,
        "execute_tool send_receipt",
        {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "send_receipt"},
        parent=root,
        start_ms=4,
        end_ms=7,
    )
    answer = _post_ok(agent_client, late)
    message = partial_message(answer)
    assert f"trace {trace}" in message and str(run.id) in message
    assert "late" in message
    step = run.steps.get()
    assert (step.tool, step.result["late"]) == ("send_receipt", True)
    assert partial_message(_post_ok(agent_client, late)) == ""
    _post_ok(agent_client, span(trace, "POST /chat", {}, span_id=http, end_ms=8))
    assert run.steps.count() == 1
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCESS


def test_older_genai_event_messages_and_nested_agents(agent_client):
    """GenAI's older event-based messages (gen_ai.user.message, gen_ai.choice) give
    the task and the answer; a nested invoke_agent span is an action step."""
    trace, root = new_id(), new_id(8)
    _post_ok(
        agent_client,
        span(
            trace,
            "invoke_agent planner",
            {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"},
            span_id=root,
            end_ms=9,
        ),
        span(
            trace,
            "chat claude",
            {"gen_ai.operation.name": "chat", "gen_ai.request.model": "claude"},
            parent=root,
            start_ms=1,
            events=[
                event("gen_ai.user.message", {"content": "Plan the trip to Lisbon"}),
                event(
                    "gen_ai.choice",
                    {"message": '{"role": "assistant", "content": "Booking."}'},
                ),
            ],
        ),
        span(
            trace,
            "invoke_agent booker",
            {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "booker"},
            parent=root,
            start_ms=2,
        ),
    )
    run = _run(trace)
    assert run.task_description == "Plan the trip to Lisbon"
    assert run.agent == "planner"
    assert [(s.type, s.description) for s in run.steps.order_by("index")] == [
        ("message", "assistant: Booking."),
        ("action", "invoke agent booker"),
    ]


@pytest.mark.django_db(transaction=True)
def test_the_same_export_sent_at_once_by_many_clients_is_stored_once(live_server):
    """Six clients send the same trace (children, then with its agent span and an
    evaluation) at the same moment: every answer is 200, and there is one run, one
    step per span and one feedback."""
    import json
    import threading
    import urllib.request

    from tests.ecosystem.otlp import URL
    from tests.factories import make_token

    _token, raw = make_token(namespace="acme", role="agent", name="fleet")
    trace, root = new_id(), new_id(8)
    children = [
        span(
            trace,
            f"execute_tool t{i}",
            {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": f"t{i}"},
            parent=root,
            start_ms=i,
        )
        for i in range(4)
    ]
    agent = span(
        trace,
        "invoke_agent",
        {"gen_ai.operation.name": "invoke_agent", "flywheel.task_description": "x"},
        span_id=root,
        end_ms=9,
        events=[
            event(
                "gen_ai.evaluation.result",
                {"gen_ai.evaluation.name": "ok", "gen_ai.evaluation.score.value": 0.4},
            )
        ],
    )
    codes = []

    def send(body):
        request = urllib.request.Request(
            live_server.url + URL,
            data=json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {raw}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            codes.append(response.status)

    for body in (export(*children[:2]), export(*children, agent)):
        start = threading.Barrier(6)

        def client(body=body, start=start):
            start.wait()
            send(body)

        threads = [threading.Thread(target=client) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert codes == [200] * 12
    run = _run(trace)
    assert run.status == RunStatus.SUCCESS
    assert sorted(run.steps.values_list("tool", flat=True)) == ["t0", "t1", "t2", "t3"]
    assert list(run.steps.order_by("index").values_list("index", flat=True)) == [
        0,
        1,
        2,
        3,
    ]
    assert run.feedback.count() == 1
