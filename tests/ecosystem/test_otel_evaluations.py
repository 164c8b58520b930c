"""GenAI evaluation results become feedback on the run, through the feedback service
(`feedback_add`): the effective score and the relearning mark follow, and a re-export
is still one feedback."""

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from learning.models import Feedback, RunStatus, Trajectory
from learning.services.scoring import effective_score_compute
from tests.ecosystem.otlp import event, export, new_id, partial_message, post, span
from tests.factories import make_token

pytestmark = pytest.mark.django_db

EVAL = "gen_ai.evaluation.result"


def _agent_span(trace, root, **kwargs):
    return span(
        trace,
        "agent",
        {"openinference.span.kind": "AGENT", "input.value": "Refund the order"},
        span_id=root,
        end_ms=9,
        **kwargs,
    )


def _post_ok(client, *spans):
    response = post(client, export(*spans))
    assert response.status_code == 200, response.content
    return response


def test_evaluation_event_is_feedback_once(agent_client):
    """A gen_ai.evaluation.result event on the agent span is llm_judge feedback with
    the score, the explanation as message, the evaluation's name as source; the
    effective score drops and the run is marked for relearning; exporting the same
    span again is still one feedback."""
    trace, root = new_id(), new_id(8)
    evaluated = _agent_span(
        trace,
        root,
        events=[
            event(
                EVAL,
                {
                    "gen_ai.evaluation.name": "task_success",
                    "gen_ai.evaluation.score.value": 0.1,
                    "gen_ai.evaluation.score.label": "fail",
                    "gen_ai.evaluation.explanation": "refunded the wrong order",
                },
            )
        ],
    )
    _post_ok(agent_client, evaluated)
    run = Trajectory.objects.get(external_id=f"otel-{trace}")
    feedback = run.feedback.get()
    assert (feedback.feedback_type, feedback.score, feedback.source) == (
        "llm_judge",
        0.1,
        "task_success",
    )
    assert feedback.message == "refunded the wrong order"
    assert feedback.metrics["evaluation"] == {
        "name": "task_success",
        "score": 0.1,
        "label": "fail",
    }
    assert feedback.metrics["otel"]["span_id"] == root
    assert run.success_score == 1.0
    assert run.effective_score == effective_score_compute(
        success_score=1.0, feedback=[("llm_judge", 0.1)]
    )
    assert run.effective_score < 1.0
    assert run.needs_relearning and run.relearning_priority > 0
    assert "effective score dropped" in run.reflection_reason  # reflected again

    _post_ok(agent_client, evaluated)
    assert run.feedback.count() == 1
    assert Trajectory.objects.count() == 1


def test_a_later_evaluation_span_is_feedback_on_the_finished_run(agent_client):
    """An evaluator's own span in the trace, carrying gen_ai.evaluation.* attributes
    and arriving after the run finished, is feedback on the run and not a step; a
    label alone gives the score (fail → 0), and flywheel.feedback_type overrides
    llm_judge."""
    trace, root = new_id(), new_id(8)
    _post_ok(agent_client, _agent_span(trace, root))
    run = Trajectory.objects.get(external_id=f"otel-{trace}")
    assert run.status == RunStatus.SUCCESS
    judge = span(
        trace,
        "evaluate task_success",
        {
            "gen_ai.evaluation.name": "policy",
            "gen_ai.evaluation.score.label": "fail",
            "flywheel.feedback_type": "human",
        },
        parent=root,
        start_ms=20,
        end_ms=21,
    )
    answer = _post_ok(agent_client, judge)
    assert partial_message(answer) == ""
    feedback = run.feedback.get()
    assert (feedback.feedback_type, feedback.score) == ("human", 0.0)
    assert run.steps.count() == 0
    _post_ok(agent_client, judge)
    assert run.feedback.count() == 1


def test_openinference_evaluation_attributes_are_feedback(agent_client):
    """OpenInference's evaluations.N.evaluation.* attributes are feedback too."""
    trace, root = new_id(), new_id(8)
    root_span = _agent_span(trace, root)
    root_span["attributes"] += [
        {"key": "evaluations.0.evaluation.name", "value": {"stringValue": "helpful"}},
        {"key": "evaluations.0.evaluation.score", "value": {"doubleValue": 0.8}},
        {"key": "evaluations.1.evaluation.name", "value": {"stringValue": "correct"}},
        {"key": "evaluations.1.evaluation.label", "value": {"stringValue": "correct"}},
    ]
    _post_ok(agent_client, root_span)
    run = Trajectory.objects.get(external_id=f"otel-{trace}")
    assert sorted(run.feedback.values_list("source", "score")) == [
        ("correct", 1.0),
        ("helpful", 0.8),
    ]


def test_a_score_outside_0_1_is_named_in_the_answer_not_stored(agent_client):
    """A score Flywheel cannot take (4 of 5, no pass/fail label) is not feedback;
    the run is stored and the partial-success message names the evaluation, the
    span and the rule."""
    trace, root = new_id(), new_id(8)
    answer = _post_ok(
        agent_client,
        _agent_span(
            trace,
            root,
            events=[
                event(
                    EVAL,
                    {
                        "gen_ai.evaluation.name": "helpfulness",
                        "gen_ai.evaluation.score.value": 4.0,
                    },
                )
            ],
        ),
    )
    message = partial_message(answer)
    assert 'evaluation "helpfulness"' in message and root in message
    assert "less than or equal to 1.0" in message
    assert Trajectory.objects.filter(external_id=f"otel-{trace}").exists()
    assert Feedback.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_sdk_span_event_over_protobuf_is_feedback(live_server):
    """The OpenTelemetry SDK's span.add_event, exported as protobuf, reaches the
    feedback service; without a service name the run's agent is the token's."""
    token, raw = make_token(namespace="acme", role="agent", name="judge")
    provider = TracerProvider()
    provider.add_span_processor(
        SimpleSpanProcessor(
            OTLPSpanExporter(
                endpoint=f"{live_server.url}/api/v1/otel/v1/traces",
                headers={"Authorization": f"Bearer {raw}"},
                timeout=10,
            )
        )
    )
    tracer = provider.get_tracer("judge")
    with tracer.start_as_current_span(
        "invoke_agent support",
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "flywheel.task_description": "Answer the billing question",
        },
    ) as root:
        root.add_event(
            EVAL,
            {
                "gen_ai.evaluation.name": "relevance",
                "gen_ai.evaluation.score.value": 0.9,
                "gen_ai.evaluation.explanation": "on topic",
            },
        )
        trace_id = format(root.get_span_context().trace_id, "032x")
    provider.shutdown()
    run = Trajectory.objects.get(
        namespace=token.namespace, external_id=f"otel-{trace_id}"
    )
    feedback = run.feedback.get()
    assert (feedback.feedback_type, feedback.score, feedback.message) == (
        "llm_judge",
        0.9,
        "on topic",
    )
    # The SDK's default service name ("unknown_service:python") is not an agent.
    assert run.agent == "judge"
