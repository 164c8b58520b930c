"""The quality gate's statistics and rule (pure functions, known values) and the
per-strategy outcomes; the rollout it decides is tested in test_rollout*.py."""

import math
import random

import pytest

from playbooks import quality
from playbooks.models import RecallLog
from playbooks.quality import Arm, horizon_analysis, verdict_rule
from playbooks.recall import playbook_recall
from tests.factories import (
    NamespaceFactory,
    TrajectoryFactory,
    make_playbook,
    make_strategy,
)


def arm(successes: int, runs: int) -> Arm:
    a = Arm()
    for i in range(runs):
        a.add(i < successes, 1.0 if i < successes else 0.0)
    return a


def test_wilson_and_newcombe_match_published_values():
    """Wilson 8/10 is (0.490, 0.943); Newcombe's 1998 example 56/70 - 48/80 has the
    hybrid score interval (0.0524, 0.3339)."""
    low, high = quality.wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.49, 0.943)
    d, low, high = quality.newcombe_interval(56, 70, 48, 80, quality.Z_95)
    assert round(d, 4) == 0.2
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)
    assert quality.wilson_interval(0, 0) == (0.0, 1.0)


def test_the_confidence_sequence_is_wider_than_one_look_and_narrowest_where_tuned():
    """The always-valid boundary costs width against a single look at the same level,
    shrinks as runs accumulate, and relative to the standard error is narrowest at
    the information it was tuned for."""
    tuned = quality.tuned_information(min_runs_per_arm=100, share=0.5)

    def ratio(n):
        variance = 0.5 / n
        width = quality.mixture_half_width(variance, tuned, quality.SEQUENTIAL_ALPHA)
        return width / math.sqrt(variance)

    assert all(ratio(n) > quality.z_for(quality.SEQUENTIAL_ALPHA) for n in (50, 200))
    assert ratio(200) < ratio(50) and ratio(200) < ratio(2000)
    assert quality.mixture_half_width(0.5 / 2000, tuned, 0.01) < (
        quality.mixture_half_width(0.5 / 200, tuned, 0.01)
    )
    assert quality.z_for(0.04) == pytest.approx(2.0537, abs=1e-4)


def test_no_verdict_before_each_cohort_has_the_minimum():
    """Below min_runs_per_arm the rule waits, however clear the difference looks."""
    result = verdict_rule(
        canary=arm(0, 59),
        production=arm(59, 59),
        horizon=None,
        min_runs_per_arm=60,
        margin=0.05,
        share=0.5,
    )
    assert result["outcome"] == "waiting" and result["stage"] == "waiting"
    assert "canary 59/60" in result["reason"]
    assert result["interval"][1] < 0  # shown, but not acted on


def test_the_horizon_rolls_back_a_worse_canary_and_promotes_a_not_worse_one():
    """At the horizon: 35 % vs 80 % is rolled back; 90 % vs 45 % and an equal one
    within the margin's reach are promoted; a small unclear drop continues."""
    worse = horizon_analysis(canary=arm(21, 60), production=arm(48, 60), margin=0.05)
    assert worse["outcome"] == "roll_back" and worse["interval"][1] < 0
    better = horizon_analysis(canary=arm(54, 60), production=arm(27, 60), margin=0.05)
    assert better["outcome"] == "promote" and better["interval"][0] > -0.05
    equal = horizon_analysis(
        canary=arm(1600, 2000), production=arm(1600, 2000), margin=0.05
    )
    assert equal["outcome"] == "promote"
    unclear = horizon_analysis(canary=arm(45, 60), production=arm(48, 60), margin=0.05)
    assert unclear["outcome"] == "continue"


def test_after_an_undecided_horizon_the_confidence_sequence_decides():
    """The stored horizon said continue; with many more runs the sequential stage
    promotes an equal canary, and never uses the horizon's level again."""
    horizon = horizon_analysis(canary=arm(45, 60), production=arm(48, 60), margin=0.05)
    result = verdict_rule(
        canary=arm(3000, 4000),
        production=arm(3000, 4000),
        horizon=horizon,
        min_runs_per_arm=60,
        margin=0.05,
        share=0.5,
    )
    assert result["stage"] == "sequential" and result["outcome"] == "promote"
    assert result["sequential"]["level"] == 1 - quality.SEQUENTIAL_ALPHA
    assert result["horizon"]["outcome"] == "continue"


def test_repeated_looks_at_equal_versions_rarely_roll_back():
    """Monte Carlo over the whole rule (horizon, then a look every 20 runs up to 6x
    the minimum) with equal success rates: rolling back is the wrong decision and
    happens in at most 5 % of 400 rollouts (the bench measures it at 1,400)."""
    rng = random.Random(11)
    wrong = 0
    for _ in range(400):
        canary, production = Arm(), Arm()
        first = {"c": Arm(), "p": Arm()}
        horizon, outcome = None, "waiting"
        while canary.runs < 6 * 50 and outcome in ("waiting", "continue"):
            for _ in range(20):
                cohort = "c" if rng.random() < 0.5 else "p"
                ok = rng.random() < 0.7
                (canary if cohort == "c" else production).add(ok, float(ok))
                if first[cohort].runs < 50:
                    first[cohort].add(ok, float(ok))
            if horizon is None and min(a.runs for a in first.values()) >= 50:
                horizon = horizon_analysis(
                    canary=first["c"], production=first["p"], margin=0.05
                )
            outcome = verdict_rule(
                canary=canary,
                production=production,
                horizon=horizon,
                min_runs_per_arm=50,
                margin=0.05,
                share=0.5,
            )["outcome"]
        wrong += outcome == "roll_back"
    assert wrong / 400 <= 0.05


def test_scores_get_an_interval_but_do_not_decide():
    """The mean effective score difference is reported with an interval; a canary with
    the same success rate and lower scores is still judged on the success rate."""
    canary, production = Arm(), Arm()
    for i in range(200):
        canary.add(i % 2 == 0, 0.6 if i % 2 == 0 else 0.1)
        production.add(i % 2 == 0, 0.95 if i % 2 == 0 else 0.5)
    score = quality.score_interval(
        canary=canary, production=production, min_runs_per_arm=100, share=0.5
    )
    assert score["estimate"] == pytest.approx(-0.375)
    assert score["interval"][1] < 0
    result = verdict_rule(
        canary=canary,
        production=production,
        horizon=horizon_analysis(canary=canary, production=production, margin=0.05),
        min_runs_per_arm=100,
        margin=0.05,
        share=0.5,
    )
    assert result["metric"] == "success_rate" and result["outcome"] != "roll_back"


@pytest.mark.django_db
def test_strategy_outcomes_follow_recalls_to_runs():
    """Runs linked to a recall (by session id) that handed out the strategy are counted
    by how they ended."""
    ns = NamespaceFactory(slug="acme")
    pb = make_playbook(ns, "airline")
    s = make_strategy(pb, "Check baggage allowance.")
    pb.refresh_from_db()
    for i, status in enumerate(["success", "success", "failure"]):
        playbook_recall(playbook=pb, task="baggage allowance", session_id=f"s{i}")
        TrajectoryFactory(
            namespace=ns,
            session_id=f"s{i}",
            status=status,
            effective_score=1.0 if status == "success" else 0.0,
        )
    TrajectoryFactory(namespace=ns, session_id="unrelated", status="failure")
    out = quality.strategy_outcomes(strategy=s)
    assert out["recalls"] == 3 and out["runs"] == 3
    assert out["by_status"] == {"success": 2, "failure": 1}
    assert out["success_rate"] == pytest.approx(0.6667, abs=1e-3)
    assert RecallLog.objects.count() == 3
