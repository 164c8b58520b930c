"""Coaching becomes lessons: a correction posted as feedback is evidence, and one
relearning pass (the schedule's task, run by a sync Django-Q2 worker) turns it into a
candidate about what the correction says, citing the feedback and the step."""

import pytest
from django_q.tasks import async_task

from learning.models import CandidateEvidence, LearningCandidate, Trajectory

pytestmark = pytest.mark.django_db

RUN = {
    "external_id": "shop-refund-1",
    "task_description": "Refund order A1 for the customer",
    "task_type": "shop.refund",
    "status": "success",
    "success_score": 1.0,
    "steps": [
        {"type": "message", "description": "user: Please refund my order A1."},
        {
            "type": "tool_call",
            "tool": "get_order",
            "description": "get_order(order_id=A1)",
            "result": {"arguments": {"order_id": "A1"}},
        },
        {
            "type": "observation",
            "tool": "get_order",
            "description": '{"order_id": "A1", "paid_with": "credit_card_9", "total": 40}',
        },
        {
            "type": "tool_call",
            "tool": "refund_order",
            "description": "refund_order(order_id=A1, payment_method=gift_card_77)",
            "result": {
                "arguments": {"order_id": "A1", "payment_method": "gift_card_77"}
            },
        },
        {
            "type": "observation",
            "tool": "refund_order",
            "description": "Refund issued",
        },
        {"type": "message", "description": "assistant: Your refund is on its way."},
    ],
}
CORRECTION = "Refunded to the gift card; the customer asked for the original card."


def test_a_correction_of_a_successful_run_becomes_a_candidate_in_one_relearning_pass(
    agent_client, reviewer_client, settings
):
    """The run succeeded and was not reflected (successes are sampled; here none is).
    A person's correction lowers its score and queues it for relearning; one pass of
    the relearning task yields a candidate saying what the correction says, about the
    refund call, with the feedback in its rationale."""
    settings.FLYWHEEL_SUCCESS_SAMPLE_RATE = 0.0
    created = agent_client.post_json("/api/v1/runs/", RUN)
    assert created.status_code == 201, created.json()
    run_id = created.json()["id"]
    assert created.json()["reflection"]["status"] == "skipped"

    feedback = agent_client.post_json(
        f"/api/v1/runs/{run_id}/feedback/",
        {"feedback_type": "human", "score": 0.1, "source": "qa", "message": CORRECTION},
    )
    assert feedback.status_code == 201, feedback.json()
    run = Trajectory.objects.get(pk=run_id)
    assert run.needs_relearning
    assert not LearningCandidate.objects.exists()  # nothing learned before the pass

    async_task("learning.tasks.relearning_task")  # sync worker in tests: runs now

    run.refresh_from_db()
    assert not run.needs_relearning and run.reflection_status == "reflected"
    body = reviewer_client.get("/api/v1/candidates/?page_size=50").json()
    (candidate,) = [c for c in body["results"] if "original card" in c["content"]]
    assert candidate["content"] == (
        "When calling `refund_order`, match what was asked for (the original card) "
        "rather than what was done (refunded to the gift card)."
    )
    assert candidate["evidence_runs"] == [run_id]
    assert "human feedback from qa" in candidate["rationale"]
    assert CORRECTION in candidate["rationale"]
    evidence = CandidateEvidence.objects.get(candidate_id=candidate["id"])
    assert evidence.step_indexes == [3, 4]  # the refund call and its answer
