"""The quality gate: does a playbook version do worse than the one before it?

For version n of playbook `slug`, the runs that used it are those whose
`playbook_versions` contains "slug@n" (finished runs only); they are compared with the
runs that used version n-1:

- success rate (status == success): each side gets a 95 % Wilson score interval; the
  difference is tested with a two-proportion z-test (pooled standard error,
  two-sided p-value), and reported with a 95 % Wald interval;
- mean effective score (the feedback-revised score, else success_score): the
  difference of means with a 95 % normal (Welch) interval.

A version is flagged when both sides have at least FLYWHEEL_QUALITY_MIN_RUNS runs
(default 20) and it is significantly worse: the success-rate drop has p < 0.05, or the
whole score-difference interval lies below zero. The flag (PlaybookVersion.flagged +
flag_reason + quality figures) shows in the console and the API next to a one-click
rollback; re-evaluating clears it when the evidence no longer holds.
"""

import math
import os
from statistics import fmean, variance

from django.conf import settings
from django.db import connection, transaction

from learning.models import RunStatus, Trajectory
from learning.webhooks import version_flagged_emit
from playbooks.models import Playbook, PlaybookVersion, RecallLog, Strategy
from review.trail import audit_event_record

Z_95 = 1.959963984540054
ALPHA = 0.05


def min_runs() -> int:
    """FLYWHEEL_QUALITY_MIN_RUNS from settings, else the environment, else 20."""
    default = os.environ.get("FLYWHEEL_QUALITY_MIN_RUNS", "20")
    return int(getattr(settings, "FLYWHEEL_QUALITY_MIN_RUNS", default))


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def two_proportion_z_test(s1: int, n1: int, s0: int, n0: int) -> tuple[float, float]:
    """(z, two-sided p) for p1 - p0 with the pooled standard error."""
    if n1 == 0 or n0 == 0:
        return (0.0, 1.0)
    pooled = (s1 + s0) / (n1 + n0)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    if se == 0:
        return (0.0, 1.0)
    z = (s1 / n1 - s0 / n0) / se
    return (z, math.erfc(abs(z) / math.sqrt(2)))


def mean_difference_interval(
    new: list[float], old: list[float], z: float = Z_95
) -> tuple[float, float, float] | None:
    """(difference, low, high) of mean(new) - mean(old), or None with < 2 on a side."""
    if len(new) < 2 or len(old) < 2:
        return None
    diff = fmean(new) - fmean(old)
    se = math.sqrt(variance(new) / len(new) + variance(old) / len(old))
    return (diff, diff - z * se, diff + z * se)


def _runs_using(playbook: Playbook, number: int) -> list[tuple[str, float | None]]:
    tag = f"{playbook.slug}@{number}"
    qs = Trajectory.objects.filter(namespace_id=playbook.namespace_id).exclude(
        status=RunStatus.RUNNING
    )
    if connection.vendor == "postgresql":
        rows = qs.filter(playbook_versions__contains=[tag]).values_list(
            "status", "effective_score", "success_score"
        )
    else:
        rows = [
            (s, e, sc)
            for s, e, sc, used in qs.filter(
                playbook_versions__icontains=tag
            ).values_list(
                "status", "effective_score", "success_score", "playbook_versions"
            )
            if tag in (used or [])
        ]
    return [(status, eff if eff is not None else sc) for status, eff, sc in rows]


def _side(rows: list[tuple[str, float | None]]) -> dict:
    n = len(rows)
    successes = sum(1 for status, _ in rows if status == RunStatus.SUCCESS)
    scores = [float(s) for _, s in rows if s is not None]
    low, high = wilson_interval(successes, n)
    return {
        "runs": n,
        "successes": successes,
        "success_rate": round(successes / n, 4) if n else None,
        "success_ci": [round(low, 4), round(high, 4)],
        "mean_score": round(fmean(scores), 4) if scores else None,
        "_scores": scores,
    }


def version_quality_compute(*, playbook: Playbook, number: int) -> dict:
    """The figures for version `number` against `number - 1` (see module docstring)."""
    new = _side(_runs_using(playbook, number))
    old = _side(_runs_using(playbook, number - 1)) if number > 1 else _side([])
    z, p_value = two_proportion_z_test(
        new["successes"], new["runs"], old["successes"], old["runs"]
    )
    result = {
        "version": number,
        "baseline": number - 1,
        "new": new,
        "previous": old,
        "min_runs": min_runs(),
    }
    if new["runs"] and old["runs"]:
        p1, p0 = new["successes"] / new["runs"], old["successes"] / old["runs"]
        se = math.sqrt(p1 * (1 - p1) / new["runs"] + p0 * (1 - p0) / old["runs"])
        result["success_diff"] = round(p1 - p0, 4)
        result["success_diff_ci"] = [
            round(p1 - p0 - Z_95 * se, 4),
            round(p1 - p0 + Z_95 * se, 4),
        ]
    result["z"] = round(z, 4)
    result["p_value"] = round(p_value, 6)
    means = mean_difference_interval(new.pop("_scores"), old.pop("_scores"))
    if means:
        result["score_diff"] = round(means[0], 4)
        result["score_diff_ci"] = [round(means[1], 4), round(means[2], 4)]
    enough = new["runs"] >= min_runs() and old["runs"] >= min_runs()
    reasons = []
    if enough and z < 0 and p_value < ALPHA:
        reasons.append(
            f"success rate {old['success_rate']:.0%} -> {new['success_rate']:.0%} "
            f"(z={z:.2f}, p={p_value:.3g}, n={new['runs']} vs {old['runs']})"
        )
    if enough and means and means[2] < 0:
        reasons.append(
            f"mean score {means[0]:+.2f} (95% CI {means[1]:+.2f} to {means[2]:+.2f})"
        )
    result["enough_data"] = enough
    result["worse"] = bool(reasons)
    result["reason"] = "; ".join(reasons)
    return result


def quality_gate_evaluate(
    *, playbook: Playbook, actor: str = "system:quality-gate"
) -> list[dict]:
    """Compute and store the figures for every version after the first; flag the ones
    that do significantly worse than their predecessor (audited when the flag changes)."""
    results = []
    versions = list(
        PlaybookVersion.objects.filter(playbook=playbook, number__gt=1)
        .defer("content")
        .order_by("number")
    )
    for version in versions:
        result = version_quality_compute(playbook=playbook, number=version.number)
        with transaction.atomic():
            was = version.flagged
            version.quality = result
            version.flagged = result["worse"]
            version.flag_reason = result["reason"]
            version.save(update_fields=["quality", "flagged", "flag_reason"])
            if was != version.flagged:
                audit_event_record(
                    namespace=playbook.namespace,
                    actor=actor,
                    action="version_flag" if version.flagged else "version_unflag",
                    target_type="playbook",
                    target_id=playbook.slug,
                    note=result["reason"],
                    data={"version": version.number},
                )
                if version.flagged:  # webhooks
                    version_flagged_emit(playbook=playbook, version=version)
        results.append(result)
    return results


def strategy_outcomes(*, strategy: Strategy) -> dict:
    """How the runs that received this strategy through recall ended (recalls are
    linked to runs by session_id or the run's external id, when the agent sent one)."""
    key = str(strategy.key)
    logs = RecallLog.objects.filter(playbook_id=strategy.playbook_id)
    if connection.vendor == "postgresql":
        logs = logs.filter(strategy_keys__contains=[key])
        rows = list(logs.values_list("session_id", "run_external_id"))
    else:
        rows = [
            (s, r)
            for s, r, keys in logs.filter(strategy_keys__icontains=key).values_list(
                "session_id", "run_external_id", "strategy_keys"
            )
            if key in keys
        ]
    sessions = {s for s, _ in rows if s}
    externals = {r for _, r in rows if r}
    by_status: dict[str, int] = {}
    scores: list[float] = []
    if sessions or externals:
        runs = (
            Trajectory.objects.filter(namespace_id=strategy.playbook.namespace_id)
            .filter(_runs_matching(sessions, externals))
            .exclude(status=RunStatus.RUNNING)
            .values_list("status", "effective_score")
        )
        for status, score in runs:
            by_status[status] = by_status.get(status, 0) + 1
            if score is not None:
                scores.append(score)
    finished = sum(by_status.values())
    successes = by_status.get(RunStatus.SUCCESS, 0)
    return {
        "strategy": strategy.pk,
        "recalls": len(rows),
        "runs": finished,
        "by_status": by_status,
        "success_rate": round(successes / finished, 4) if finished else None,
        "success_ci": [round(x, 4) for x in wilson_interval(successes, finished)],
        "mean_score": round(fmean(scores), 4) if scores else None,
    }


def _runs_matching(sessions: set[str], externals: set[str]):
    from django.db.models import Q

    q = Q(pk__in=[])
    if sessions:
        q |= Q(session_id__in=sessions)
    if externals:
        q |= Q(external_id__in=externals)
    return q
