"""Effective score of a run from its outcome and its feedback.

Strategies (settings.FLYWHEEL_SCORE_STRATEGY, default ``weighted``):

- ``latest``: the newest feedback score; the run's own ``success_score`` if none.
- ``average``: the plain mean of ``success_score`` (when known) and every feedback score.
- ``weighted``: a recency- and source-weighted mean. Order the signals newest first
  (feedback by time, the run's own ``success_score`` last, as the oldest). Signal k
  (k = 0 for the newest) with score x_k and source weight s_k gets weight
  ``w_k = s_k * RECENCY_DECAY ** k`` and the effective score is
  ``sum(w_k * x_k) / sum(w_k)``. Source weights (SOURCE_WEIGHTS): human 1.0, test 0.9,
  production 0.8, ab_test 0.8, monitoring 0.6, llm_judge 0.5, the run's own outcome 0.7;
  RECENCY_DECAY = 0.8.
"""

from collections.abc import Sequence

from django.conf import settings

SOURCE_WEIGHTS = {
    "human": 1.0,
    "test": 0.9,
    "production": 0.8,
    "ab_test": 0.8,
    "monitoring": 0.6,
    "llm_judge": 0.5,
    "outcome": 0.7,
}
RECENCY_DECAY = 0.8
STRATEGIES = ("latest", "average", "weighted")


def effective_score_compute(
    *,
    success_score: float | None,
    feedback: Sequence[tuple[str, float]],
    strategy: str | None = None,
) -> float | None:
    """``feedback`` is (feedback_type, score) pairs, oldest first."""
    strategy = strategy or settings.FLYWHEEL_SCORE_STRATEGY
    if strategy not in STRATEGIES:
        raise ValueError(
            f"unknown score strategy {strategy!r}; use one of {STRATEGIES}"
        )
    if strategy == "latest":
        if feedback:
            return feedback[-1][1]
        return success_score
    values = [score for _type, score in feedback]
    if strategy == "average":
        if success_score is not None:
            values.append(success_score)
        return sum(values) / len(values) if values else None
    signals = [
        (SOURCE_WEIGHTS.get(kind, 0.5), score) for kind, score in reversed(feedback)
    ]
    if success_score is not None:
        signals.append((SOURCE_WEIGHTS["outcome"], success_score))
    if not signals:
        return None
    weights = [source * RECENCY_DECAY**k for k, (source, _x) in enumerate(signals)]
    return sum(w * x for w, (_s, x) in zip(weights, signals)) / sum(weights)


def relearning_priority(delta: float) -> int:
    """0–10: how far feedback departs from what the run claimed."""
    return max(1, min(10, round(abs(delta) * 10)))
