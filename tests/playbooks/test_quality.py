"""The quality gate on synthetic runs with a known effect: a version that clearly does
worse is flagged with its statistics; a small or insignificant change is not."""

import pytest

from learning.models import Trajectory
from playbooks import quality
from playbooks.models import PlaybookVersion, RecallLog
from playbooks.recall import playbook_recall
from playbooks.tasks import quality_gate_evaluate
from tests.factories import (
    NamespaceFactory,
    TrajectoryFactory,
    make_playbook,
    make_strategy,
)

pytestmark = pytest.mark.django_db


def runs(ns, tag, successes, total, score_ok=0.9, score_bad=0.2):
    Trajectory.objects.bulk_create(
        [
            TrajectoryFactory.build(
                namespace=ns,
                playbook_versions=[tag, "other@1"],
                status="success" if i < successes else "failure",
                success_score=1.0 if i < successes else 0.0,
                effective_score=score_ok if i < successes else score_bad,
            )
            for i in range(total)
        ]
    )


def test_wilson_and_z_test_match_known_values():
    """Wilson 8/10 is (0.490, 0.943); 50/100 vs 80/100 gives z = -4.45."""
    low, high = quality.wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.49, 0.943)
    z, p = quality.two_proportion_z_test(50, 100, 80, 100)
    assert round(z, 2) == -4.45 and p < 1e-4
    assert quality.two_proportion_z_test(0, 0, 5, 10) == (0.0, 1.0)


def test_worse_version_is_flagged_and_a_similar_one_is_not():
    """v2 drops success from 80 % to 50 % over 100 runs each: flagged with reason and
    figures. v3 (55 %) against v2 is not significantly different: not flagged."""
    ns = NamespaceFactory(slug="acme")
    pb = make_playbook(ns, "airline")
    make_strategy(pb, "a")
    make_strategy(pb, "b")
    runs(ns, "airline@1", 80, 100)
    runs(ns, "airline@2", 50, 100)
    runs(ns, "airline@3", 55, 100)
    runs(ns, "retail@2", 0, 30)  # another playbook's runs never count

    results = {r["version"]: r for r in quality.quality_gate_evaluate(playbook=pb)}

    v2 = PlaybookVersion.objects.get(playbook=pb, number=2)
    assert v2.flagged and "success rate 80% -> 50%" in v2.flag_reason
    assert v2.quality["new"]["runs"] == 100 and v2.quality["previous"]["runs"] == 100
    assert v2.quality["p_value"] < 0.001
    assert v2.quality["score_diff_ci"][1] < 0
    lo, hi = v2.quality["new"]["success_ci"]
    assert lo < 0.5 < hi
    assert not PlaybookVersion.objects.get(playbook=pb, number=3).flagged
    assert results[3]["z"] > 0 and not results[3]["worse"]


def test_too_few_runs_are_not_flagged_and_flags_clear():
    """Below the minimum number of runs a drop is reported but not flagged; a flag that
    no longer holds is cleared on re-evaluation (through the scheduled task)."""
    ns = NamespaceFactory(slug="acme")
    pb = make_playbook(ns, "airline")
    make_strategy(pb, "a")
    runs(ns, "airline@1", 9, 10)
    runs(ns, "airline@2", 1, 10)
    assert quality_gate_evaluate() == {"versions_flagged": 0}
    v2 = PlaybookVersion.objects.get(playbook=pb, number=2)
    assert not v2.flagged and v2.quality["enough_data"] is False
    PlaybookVersion.objects.filter(pk=v2.pk).update(flagged=True, flag_reason="old")
    quality.quality_gate_evaluate(playbook=pb)
    v2.refresh_from_db()
    assert not v2.flagged and v2.flag_reason == ""


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


def test_lower_scores_alone_flag_a_version():
    """Same success rate but clearly lower effective scores: flagged by the score
    interval, not by the z-test."""
    ns = NamespaceFactory(slug="acme")
    pb = make_playbook(ns, "airline")
    make_strategy(pb, "a")
    runs(ns, "airline@1", 30, 40, score_ok=0.95, score_bad=0.5)
    runs(ns, "airline@2", 30, 40, score_ok=0.7, score_bad=0.2)
    result = quality.version_quality_compute(playbook=pb, number=2)
    assert result["p_value"] == 1.0 and result["worse"]
    assert result["reason"].startswith("mean score -0.26")  # 0.575 - 0.8375
