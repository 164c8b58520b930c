"""Effective score strategies and relearning marks (learning/services/scoring.py, runs.py)."""

import pytest

from learning.services import runs as run_services
from learning.services.scoring import effective_score_compute, relearning_priority
from tests.factories import FeedbackFactory, TrajectoryFactory

pytestmark = pytest.mark.django_db

# The run claimed 1.0; then a human said 0.2, then monitoring said 0.6 (oldest first).
FEEDBACK = [("human", 0.2), ("monitoring", 0.6)]


def test_latest_is_the_newest_feedback():
    """latest: the newest feedback wins; with none, the run's own score."""
    assert (
        effective_score_compute(success_score=1.0, feedback=FEEDBACK, strategy="latest")
        == 0.6
    )
    assert (
        effective_score_compute(success_score=0.7, feedback=[], strategy="latest")
        == 0.7
    )


def test_average_is_the_plain_mean_of_outcome_and_feedback():
    """average: (1.0 + 0.2 + 0.6) / 3 = 0.6; without an outcome (0.2 + 0.6) / 2 = 0.4."""
    assert effective_score_compute(
        success_score=1.0, feedback=FEEDBACK, strategy="average"
    ) == pytest.approx(0.6)
    assert effective_score_compute(
        success_score=None, feedback=FEEDBACK, strategy="average"
    ) == pytest.approx(0.4)


def test_weighted_follows_the_documented_formula():
    """weighted, newest first, w_k = source_weight * 0.8**k:
    monitoring 0.6 -> 0.6 * 1 = 0.6; human 0.2 -> 1.0 * 0.8 = 0.8;
    outcome 1.0 -> 0.7 * 0.64 = 0.448.
    (0.6*0.6 + 0.8*0.2 + 0.448*1.0) / (0.6 + 0.8 + 0.448) = 0.968 / 1.848."""
    value = effective_score_compute(
        success_score=1.0, feedback=FEEDBACK, strategy="weighted"
    )
    assert value == pytest.approx(0.968 / 1.848)
    assert value == pytest.approx(0.5238095, abs=1e-6)


def test_weighted_trusts_a_human_over_a_judge_at_the_same_age():
    """Source weights: the same two scores in the same order weigh a human (1.0) more
    than an llm_judge (0.5). human 0.0 then judge 1.0: (0.5*1 + 0.8*0) / 1.3;
    judge 0.0 then human 1.0: (1.0*1 + 0.4*0) / 1.4."""
    judge_last = effective_score_compute(
        success_score=None,
        feedback=[("human", 0.0), ("llm_judge", 1.0)],
        strategy="weighted",
    )
    human_last = effective_score_compute(
        success_score=None,
        feedback=[("llm_judge", 0.0), ("human", 1.0)],
        strategy="weighted",
    )
    assert judge_last == pytest.approx(0.5 / 1.3)
    assert human_last == pytest.approx(1.0 / 1.4)
    assert human_last > judge_last


def test_no_signal_means_no_score_and_unknown_strategies_are_refused():
    """Nothing to go on is None; a typo in the strategy is an error, not a silent default."""
    for strategy in ("latest", "average", "weighted"):
        assert (
            effective_score_compute(success_score=None, feedback=[], strategy=strategy)
            is None
        )
    with pytest.raises(ValueError, match="unknown score strategy"):
        effective_score_compute(success_score=1.0, feedback=[], strategy="median")


@pytest.mark.parametrize(
    "delta, priority", [(0.05, 1), (0.31, 3), (-0.55, 6), (0.8, 8), (-1.0, 10)]
)
def test_relearning_priority_grows_with_the_departure(delta, priority):
    """Priority is |delta| * 10 rounded, kept within 1–10."""
    assert relearning_priority(delta) == priority


@pytest.mark.parametrize(
    "strategy, expected",
    [
        ("latest", 0.6),
        ("average", 0.6),
        ("weighted", 0.968 / 1.848),
    ],
)
def test_feedback_add_stores_the_strategys_score(settings, strategy, expected):
    """feedback_add recomputes the effective score with the configured strategy."""
    settings.FLYWHEEL_SCORE_STRATEGY = strategy
    run = TrajectoryFactory(success_score=1.0, effective_score=1.0)
    FeedbackFactory(trajectory=run, feedback_type="human", score=0.2)
    _feedback, run = run_services.feedback_add(
        run=run, data={"feedback_type": "monitoring", "score": 0.6}
    )
    run.refresh_from_db()
    assert run.effective_score == pytest.approx(expected)


def test_a_large_drop_marks_the_run_for_relearning_with_priority(settings):
    """Feedback 0.8 below the run's claim (threshold 0.3) marks it, priority 8; a later
    small departure keeps the higher priority."""
    settings.FLYWHEEL_RELEARN_THRESHOLD = 0.3
    run = TrajectoryFactory(success_score=1.0, effective_score=1.0)
    _f, run = run_services.feedback_add(
        run=run, data={"feedback_type": "human", "score": 0.2}
    )
    run.refresh_from_db()
    assert (run.needs_relearning, run.relearning_priority) == (True, 8)
    _f, run = run_services.feedback_add(
        run=run, data={"feedback_type": "test", "score": 0.6}
    )
    run.refresh_from_db()
    assert (run.needs_relearning, run.relearning_priority) == (True, 8)


def test_agreeing_feedback_does_not_mark_the_run(settings):
    """Feedback within the threshold of the run's own score leaves it alone."""
    settings.FLYWHEEL_RELEARN_THRESHOLD = 0.3
    run = TrajectoryFactory(success_score=1.0, effective_score=1.0)
    run_services.feedback_add(run=run, data={"feedback_type": "human", "score": 0.8})
    run.refresh_from_db()
    assert (run.needs_relearning, run.relearning_priority) == (False, 0)


def test_a_surprising_success_is_marked_too(settings):
    """A failure that feedback calls a success is also worth relearning from."""
    run = TrajectoryFactory(status="failure", success_score=0.0, effective_score=0.0)
    run_services.feedback_add(
        run=run, data={"feedback_type": "production", "score": 0.9}
    )
    run.refresh_from_db()
    assert (run.needs_relearning, run.relearning_priority) == (True, 9)


def test_a_score_drop_on_a_finished_run_reaches_the_pipeline(monkeypatch, settings):
    """When feedback lowers a finished run's effective score the pipeline hears of it
    with the previous score; a rise does not trigger it."""
    settings.FLYWHEEL_SCORE_STRATEGY = "latest"
    calls = []
    monkeypatch.setattr(
        run_services,
        "run_score_drop_handle",
        lambda *, run, previous: calls.append((run.pk, previous, run.effective_score)),
    )
    run = TrajectoryFactory(success_score=0.5, effective_score=0.5)
    run_services.feedback_add(run=run, data={"feedback_type": "human", "score": 0.9})
    run_services.feedback_add(run=run, data={"feedback_type": "human", "score": 0.1})
    assert calls == [(run.pk, 0.9, 0.1)]
