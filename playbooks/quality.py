"""The quality gate: staged rollouts of playbook versions (labels, cohorts, the
verdict) and how the runs that received each strategy ended.

**Labels.** Versions are immutable; two labels say which one serves.
`Playbook.production_version` is what recall returns by default;
`Playbook.current_version` is the version the live strategy rows equal (the newest
edit). Without a running rollout the two are the same. With a `RolloutPolicy`, a new
version becomes the *canary* (`current_version`) while production stays where it is;
`version_committed_label` (called by `playbooks.versions.playbook_version_commit`, the
one place a version is made) decides which:

- no policy (and no rollout running): the new version is production at once;
- a rollback to version n (`ChangeKind.ROLLBACK`): production at once — restoring a
  known version is the way out, not an experiment — and a running rollout ends
  `rolled_back`;
- a version whose content equals production's (e.g. a revert of the canary's only
  change): production at once, the running rollout ends `rolled_back`;
- otherwise it opens a rollout with the policy as it is now. A change made while a
  canary runs (an approval, a hand edit, a revert) *folds in*: the running rollout ends
  `superseded` and a new one starts with the new version as the canary, so the
  experiment restarts (same cohort salt, so sessions keep their side) and a verdict
  always speaks about exactly the content agents got.

**Cohorts.** `rollout_cohort` hashes a unit — `session_id`, else `user_id`, else the
run's external id — with the rollout's salt (SHA-256, the first 64 bits as a fraction
of 2^64) and serves the canary when the fraction is below the share: deterministic and
sticky for the rollout's life. A recall without any of the three is assigned at random
(unbiased, not sticky).

**The verdict** (`rollout_verdict`) compares the two cohorts over the same period: the
finished runs created since the rollout started whose `playbook_versions` name
`slug@canary` or `slug@production` (a run naming both counts in neither). It decides on
the success rate difference d = p(canary) - p(production); it also reports the mean
effective score difference with an always-valid 95 % interval (for reading, it does
not decide). The rule, honest however often it is looked at (alpha = 0.05 in total):

1. *Waiting* until each cohort has `min_runs_per_arm` finished runs: no decision.
2. *Fixed horizon*: the first `min_runs_per_arm` runs of each cohort (by arrival) are
   analysed once — stored on the rollout the first time the gate sees them, so later
   looks read the same answer — with Newcombe's hybrid score interval for d at 96 %
   (alpha 0.04). Roll back if the interval lies below 0 (the canary is worse); promote
   if it lies above -margin (it is not worse by more than the margin).
3. *Sequential* after an undecided horizon: every later look uses all runs with an
   always-valid 99 % confidence sequence for d (alpha 0.01; the normal-mixture
   boundary of Robbins, as in Howard et al. 2021 and Waudby-Smith et al. 2023, with the
   plug-in variance) — valid under optional stopping, so looking every minute does not
   inflate the error — and the same two conditions.

Rolling back wins when both conditions hold. By the union bound the chance of
promoting a canary worse by at least the margin, or of rolling back one that is not
worse, is at most 0.04 / 2 + 0.01 (about 0.025: each side of a symmetric interval).

**Per-strategy outcomes** (`strategy_outcomes`): the runs linked to recalls that
handed the strategy out, by how they ended.
"""

import hashlib
import math
import random
import secrets
from dataclasses import dataclass
from statistics import NormalDist, fmean

from django.db import connection
from django.db.models import Q
from django.utils import timezone

from learning.events import (
    version_flagged_emit,
    version_promoted_emit,
    version_rolled_back_emit,
)
from learning.models import RunStatus, Trajectory
from playbooks.models import (
    ChangeKind,
    Playbook,
    PlaybookVersion,
    RecallLog,
    Rollout,
    RolloutPolicy,
    RolloutState,
    Strategy,
)
from review.trail import audit_event_record

Z_95 = 1.959963984540054
ALPHA = 0.05  # in total, over every look
HORIZON_ALPHA = 0.04  # spent once, on the first min_runs_per_arm runs of each cohort
SEQUENTIAL_ALPHA = 0.01  # spent over every look after an undecided horizon
# The sequential boundary is tightest when the smaller cohort has this many times the
# minimum (a fixed choice: tuning on the data would void the guarantee).
SEQUENTIAL_TUNED_AT = 2

PRODUCTION, CANARY, PINNED = "production", "canary", "pinned"
GATE_ACTOR = "system:quality-gate"


# --- statistics (pure functions) -----------------------------------------------------


def z_for(alpha: float) -> float:
    """The two-sided normal quantile: z with P(|Z| > z) = alpha."""
    return NormalDist().inv_cdf(1 - alpha / 2)


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def newcombe_interval(
    s1: int, n1: int, s0: int, n0: int, z: float
) -> tuple[float, float, float]:
    """(d, low, high) for d = s1/n1 - s0/n0: Newcombe's hybrid score interval (his
    method 10), built from the two Wilson intervals; good coverage at small n."""
    p1, p0 = s1 / n1, s0 / n0
    l1, u1 = wilson_interval(s1, n1, z)
    l0, u0 = wilson_interval(s0, n0, z)
    d = p1 - p0
    low = d - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    return d, low, high


def _mixture_optimum(alpha: float) -> float:
    """x = r / I where the normal-mixture boundary is narrowest relative to the
    standard error: the root of ln((1 + x) / (x alpha^2)) = 1 / x (bisection)."""
    low, high = 1e-6, 10.0
    for _ in range(100):
        mid = (low + high) / 2
        if math.log((1 + mid) / (mid * alpha * alpha)) > 1 / mid:
            high = mid  # the width grows here: the optimum lies below
        else:
            low = mid
    return (low + high) / 2


_MIXTURE_X = {a: _mixture_optimum(a) for a in (ALPHA, SEQUENTIAL_ALPHA)}


def mixture_half_width(
    variance: float, tuned_information: float, alpha: float
) -> float:
    """Half-width of the two-sided normal-mixture confidence sequence for an estimate
    with this variance (information I = 1 / variance): with S = I (estimate - truth)
    a martingale of variance I, P(exists I: |S| >= sqrt((I + r) ln((I + r) / (r
    alpha^2)))) <= alpha (Ville's inequality on the Gaussian mixture of exponential
    martingales). r is fixed in advance: narrowest at `tuned_information`."""
    if variance <= 0:
        return 0.0
    information = 1 / variance
    x = _MIXTURE_X.get(alpha) or _mixture_optimum(alpha)
    r = x * tuned_information
    total = information + r
    return math.sqrt(total * math.log(total / (r * alpha * alpha))) / information


@dataclass
class Arm:
    """One cohort's finished runs: counts and score sums (scores are the effective
    score, else success_score)."""

    runs: int = 0
    successes: int = 0
    scored: int = 0
    score_sum: float = 0.0
    score_squares: float = 0.0

    def add(self, success: bool, score: float | None) -> None:
        self.runs += 1
        self.successes += bool(success)
        if score is not None:
            self.scored += 1
            self.score_sum += score
            self.score_squares += score * score

    @property
    def rate(self) -> float | None:
        return self.successes / self.runs if self.runs else None

    @property
    def mean_score(self) -> float | None:
        return self.score_sum / self.scored if self.scored else None

    def rate_variance(self) -> float:
        """p(1-p)/n with p shrunk by half a success and half a failure, so an arm
        with no failures yet still has some uncertainty."""
        p = (self.successes + 0.5) / (self.runs + 1)
        return p * (1 - p) / max(self.runs, 1)

    def score_variance(self) -> float:
        """The mean score's variance (sample variance / n), never below what a
        0-1 outcome with one pseudo-observation each way would give."""
        if self.scored < 2:
            return 0.25
        mean = self.score_sum / self.scored
        sample = max(
            (self.score_squares - self.scored * mean * mean) / (self.scored - 1), 0.0
        )
        return max(sample, 0.25 / (self.scored + 1)) / self.scored

    def summary(self) -> dict:
        low, high = wilson_interval(self.successes, self.runs)
        return {
            "runs": self.runs,
            "successes": self.successes,
            "success_rate": round(self.rate, 4) if self.runs else None,
            "success_ci": [round(low, 4), round(high, 4)],
            "scored": self.scored,
            "mean_score": round(self.mean_score, 4) if self.scored else None,
        }


def tuned_information(*, min_runs_per_arm: int, share: float) -> float:
    """The information (1 / variance of d at p = 1/2) when the smaller cohort has
    SEQUENTIAL_TUNED_AT times the minimum and the larger its share's worth."""
    small = max(min_runs_per_arm, 1) * SEQUENTIAL_TUNED_AT
    fraction = min(share, 1 - share)
    large = small * (1 - fraction) / fraction
    return 1 / (0.25 / small + 0.25 / large)


def _outcome(low: float, high: float, margin: float) -> str:
    if high < 0:
        return "roll_back"
    if low > -margin:
        return "promote"
    return "continue"


def horizon_analysis(*, canary: Arm, production: Arm, margin: float) -> dict:
    """The fixed-horizon test on the first min_runs_per_arm runs of each cohort."""
    d, low, high = newcombe_interval(
        canary.successes,
        canary.runs,
        production.successes,
        production.runs,
        z_for(HORIZON_ALPHA),
    )
    return {
        "runs": {"canary": canary.runs, "production": production.runs},
        "successes": {"canary": canary.successes, "production": production.successes},
        "estimate": round(d, 4),
        "interval": [round(low, 4), round(high, 4)],
        "level": 1 - HORIZON_ALPHA,
        "outcome": _outcome(low, high, margin),
    }


def sequential_interval(
    *, canary: Arm, production: Arm, min_runs_per_arm: int, share: float, alpha: float
) -> tuple[float, float, float]:
    """(d, low, high): the always-valid confidence sequence for the success rates."""
    d = canary.successes / canary.runs - production.successes / production.runs
    half = mixture_half_width(
        canary.rate_variance() + production.rate_variance(),
        tuned_information(min_runs_per_arm=min_runs_per_arm, share=share),
        alpha,
    )
    return d, d - half, d + half


def score_interval(
    *, canary: Arm, production: Arm, min_runs_per_arm: int, share: float
) -> dict | None:
    """The mean effective score difference with an always-valid 95 % interval."""
    if not canary.scored or not production.scored:
        return None
    d = canary.mean_score - production.mean_score
    half = mixture_half_width(
        canary.score_variance() + production.score_variance(),
        tuned_information(min_runs_per_arm=min_runs_per_arm, share=share),
        ALPHA,
    )
    return {
        "estimate": round(d, 4),
        "interval": [round(d - half, 4), round(d + half, 4)],
        "level": 1 - ALPHA,
    }


def verdict_rule(  # noqa: C901 -- the three stages of the rule read best in one place
    *,
    canary: Arm,
    production: Arm,
    horizon: dict | None,
    min_runs_per_arm: int,
    margin: float,
    share: float,
) -> dict:
    """The decision from the cohorts' counts (all runs so far) and the stored horizon
    analysis (None until both cohorts reached the minimum). Pure: the benchmark runs
    it in-process. `outcome` is waiting | continue | promote | roll_back."""
    result: dict = {
        "metric": "success_rate",
        "min_runs_per_arm": min_runs_per_arm,
        "margin": margin,
        "stage": "waiting",
        "outcome": "waiting",
        "estimate": None,
        "interval": None,
        "horizon": horizon,
        "sequential": None,
    }
    if canary.runs and production.runs:
        d, low, high = sequential_interval(
            canary=canary,
            production=production,
            min_runs_per_arm=min_runs_per_arm,
            share=share,
            alpha=ALPHA if horizon is None else SEQUENTIAL_ALPHA,
        )
        result["estimate"] = round(d, 4)
        result["interval"] = [round(low, 4), round(high, 4)]
    if horizon is None:
        needed = [
            f"{name} {arm.runs}/{min_runs_per_arm}"
            for name, arm in ((CANARY, canary), (PRODUCTION, production))
            if arm.runs < min_runs_per_arm
        ]
        result["reason"] = "waiting for runs: " + ", ".join(needed)
        return result
    if horizon["outcome"] != "continue":
        result.update(
            stage="horizon",
            outcome=horizon["outcome"],
            estimate=horizon["estimate"],
            interval=horizon["interval"],
        )
        result["reason"] = _reason(horizon, margin, "fixed horizon")
        return result
    low, high = result["interval"]
    sequential = {
        "estimate": result["estimate"],
        "interval": result["interval"],
        "level": 1 - SEQUENTIAL_ALPHA,
        "outcome": _outcome(low, high, margin),
    }
    result.update(stage="sequential", sequential=sequential)
    result["outcome"] = sequential["outcome"]
    result["reason"] = _reason(sequential, margin, "confidence sequence")
    return result


def _reason(analysis: dict, margin: float, stage: str) -> str:
    d = analysis["estimate"]
    low, high = analysis["interval"]
    level = f"{analysis['level']:.0%}"
    figures = f"success rate {d * 100:+.1f} points ({level} {stage}: {low * 100:+.1f} to {high * 100:+.1f})"
    if analysis["outcome"] == "roll_back":
        return f"canary worse: {figures}, all below 0"
    if analysis["outcome"] == "promote":
        return f"canary not worse: {figures}, all above -{margin * 100:g}"
    return f"undecided: {figures}"


RULE_TEXT = (
    "No verdict before each cohort has {m} finished runs. Then the first {m} of each "
    "are analysed once (a fixed horizon; 96% Newcombe interval of canary minus "
    "production success rate): roll back if it lies below 0, promote if it lies above "
    "-{margin} points. If undecided, every later look uses all runs with an "
    "always-valid 99% confidence sequence (valid however often it is checked) and the "
    "same two conditions. Rolling back wins when both hold."
)


def rule_text(*, min_runs_per_arm: int, margin: float) -> str:
    return RULE_TEXT.format(m=min_runs_per_arm, margin=f"{margin * 100:g}")


# --- cohorts -------------------------------------------------------------------------


def rollout_unit(*, session_id: str = "", user_id: str = "", run: str = "") -> str:
    """What a recall is randomised by: the session, else the user, else the run."""
    if session_id:
        return f"session:{session_id}"
    if user_id:
        return f"user:{user_id}"
    if run:
        return f"run:{run}"
    return ""


def rollout_cohort(*, salt: str, share: float, unit: str) -> str:
    """canary for a deterministic `share` of units (sticky while the salt stays),
    production for the rest; a recall with no unit is assigned at random."""
    if not unit:
        return CANARY if random.random() < share else PRODUCTION
    digest = hashlib.sha256(f"{salt}:{unit}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return CANARY if fraction < share else PRODUCTION


# --- recall's view of a version that is not the live one ---------------------------


def content_overlay(
    *, live: list[dict], target: list[dict], updated: float = 0.0
) -> dict:
    """How `target` (a version's snapshot) differs from `live` (the snapshot the live
    strategy rows equal): the live keys recall must leave out, and the target's items
    to rank instead (`updated`: epoch seconds for their recency, the target version's
    creation). Items are compared whole (key, fields, row id)."""
    live_by = {item["key"]: item for item in live}
    same = {item["key"] for item in target if live_by.get(item["key"]) == item}
    return {
        "exclude": sorted(key for key in live_by if key not in same),
        "items": [item for item in target if item["key"] not in same],
        "updated": updated,
    }


# --- labels --------------------------------------------------------------------------


def rollout_running(*, playbook: Playbook) -> Rollout | None:
    return Rollout.objects.filter(
        playbook_id=playbook.pk, state=RolloutState.RUNNING
    ).first()


def rollout_latest(*, playbook: Playbook) -> Rollout | None:
    """The running rollout, else the last one that ended (a superseded one is never
    the last: a newer one replaced it)."""
    return (
        Rollout.objects.filter(playbook_id=playbook.pk)
        .order_by("-started_at", "-id")
        .first()
    )


def production_set(*, playbook: Playbook, number: int, left: str, now=None) -> None:
    """Move the production label to version `number` (the caller saves the playbook):
    the old production version records until when it served and why it left."""
    now = now or timezone.now()
    previous = playbook.production_version
    if previous != number:
        PlaybookVersion.objects.filter(playbook=playbook, number=previous).update(
            production_until=now, production_left=left
        )
    PlaybookVersion.objects.filter(
        playbook=playbook, number=number, production_since__isnull=True
    ).update(production_since=now)
    playbook.production_version = number


def version_committed_label(
    *,
    playbook: Playbook,
    version: PlaybookVersion,
    change_kind: str,
    actor: str,
    previous: PlaybookVersion | None = None,
) -> None:
    """Label a version just committed (see the module docstring); the caller holds the
    playbook's row lock, has set current_version and saves the playbook after.
    `previous`: the version the new one follows, as the caller read it (it is the
    production version unless a rollout runs: not read twice)."""
    now = timezone.now()
    running = rollout_running(playbook=playbook)
    policy = RolloutPolicy.objects.filter(playbook_id=playbook.pk).first()
    if previous is not None and previous.number == playbook.production_version:
        production = previous
    else:
        production = PlaybookVersion.objects.filter(
            playbook=playbook, number=playbook.production_version
        ).first()
    same_as_production = (
        production is not None and production.content == version.content
    )
    if (
        change_kind == ChangeKind.ROLLBACK
        or same_as_production
        or (policy is None and running is None)
    ):
        if running is not None:
            why = (
                f"version {version.number} restores version {version.rolled_back_to}"
                if change_kind == ChangeKind.ROLLBACK
                else f"version {version.number} has production's content"
            )
            rollout_close(
                rollout=running,
                playbook=playbook,
                state=RolloutState.ROLLED_BACK,
                actor=actor,
                reason=f"{why} and became production",
                now=now,
            )
        production_set(
            playbook=playbook,
            number=version.number,
            left=_left_reason(version, change_kind, policy is not None),
            now=now,
        )
        return
    params = policy or running
    salt = running.salt if running is not None else secrets.token_hex(16)
    if running is not None:
        rollout_close(
            rollout=running,
            playbook=playbook,
            state=RolloutState.SUPERSEDED,
            actor=actor,
            reason=f"version {version.number} folded in; the experiment restarts",
            now=now,
        )
    rollout_open(
        playbook=playbook,
        version=version,
        production=production,
        share=params.share,
        min_runs_per_arm=params.min_runs_per_arm,
        margin=params.margin,
        salt=salt,
        actor=actor,
        now=now,
    )


def _left_reason(version: PlaybookVersion, change_kind: str, has_policy: bool) -> str:
    if change_kind == ChangeKind.ROLLBACK:
        return f"replaced by version {version.number} (rollback to version {version.rolled_back_to})"
    if has_policy:
        return f"replaced by version {version.number} (same content)"
    return f"replaced by version {version.number} (no rollout policy)"


def rollout_open(
    *,
    playbook: Playbook,
    version: PlaybookVersion,
    production: PlaybookVersion | None,
    share: float,
    min_runs_per_arm: int,
    margin: float,
    salt: str,
    actor: str,
    now,
) -> Rollout:
    """Start an experiment: `version` (the live content) as the canary."""
    rollout = Rollout.objects.create(
        playbook=playbook,
        canary=version.number,
        production=playbook.production_version,
        share=share,
        min_runs_per_arm=min_runs_per_arm,
        margin=margin,
        salt=salt,
        started_at=now,
        overlay=content_overlay(
            live=version.content,
            target=production.content if production else [],
            updated=production.created_at.timestamp() if production else 0.0,
        ),
    )
    audit_event_record(
        namespace=playbook.namespace,
        actor=actor,
        action="rollout_start",
        target_type="playbook",
        target_id=playbook.slug,
        data={
            "rollout": rollout.pk,
            "canary": rollout.canary,
            "production": rollout.production,
            "share": share,
            "min_runs_per_arm": min_runs_per_arm,
            "margin": margin,
        },
    )
    _gate_schedule_ensure()
    return rollout


def _gate_schedule_ensure() -> None:
    """The gate's schedule exists as soon as a rollout runs (setup_schedules makes it
    too), so a worker reaches the verdict with nobody pressing a button."""
    from django.db import transaction

    from learning.services.schedules import schedule_ensure

    transaction.on_commit(lambda: schedule_ensure(name="flywheel-quality-gate"))


_CLOSE_ACTIONS = {
    RolloutState.PROMOTED: "rollout_promote",
    RolloutState.ROLLED_BACK: "rollout_roll_back",
    RolloutState.SUPERSEDED: "rollout_supersede",
}


def rollout_close(
    *,
    rollout: Rollout,
    playbook: Playbook,
    state: str,
    actor: str,
    reason: str,
    verdict: dict | None = None,
    flag: bool = False,
    now=None,
) -> Rollout:
    """End a rollout (the one writer of its end): state, who, why, the final figures
    on the rollout and the canary's version, an audit event, and the webhook event
    (`version.promoted` / `version.rolled_back`; `version.flagged` too when the gate
    found the canary worse). Labels are the caller's: it moves production or restores
    the live strategies."""
    now = now or timezone.now()
    if verdict is None:
        verdict = rollout_verdict(rollout=rollout, playbook=playbook)
    rollout.state = state
    rollout.ended_at = now
    rollout.ended_by = actor
    rollout.reason = reason
    rollout.verdict = verdict
    rollout.save(update_fields=["state", "ended_at", "ended_by", "reason", "verdict"])
    canary = PlaybookVersion.objects.filter(
        playbook=playbook, number=rollout.canary
    ).first()
    if canary is not None:
        canary.quality = {**verdict, "rollout": rollout.pk, "state": state}
        canary.flagged = flag
        canary.flag_reason = reason if flag else ""
        canary.save(update_fields=["quality", "flagged", "flag_reason"])
    audit_event_record(
        namespace=playbook.namespace,
        actor=actor,
        action=_CLOSE_ACTIONS[state],
        target_type="playbook",
        target_id=playbook.slug,
        note=reason,
        data={
            "rollout": rollout.pk,
            "canary": rollout.canary,
            "production": rollout.production,
            "arms": verdict.get("arms"),
            "estimate": verdict.get("estimate"),
            "interval": verdict.get("interval"),
        },
    )
    if state == RolloutState.PROMOTED:
        version_promoted_emit(
            playbook=playbook,
            version=rollout.canary,
            previous=rollout.production,
            by=actor,
            reason=reason,
            verdict=verdict,
        )
    elif state == RolloutState.ROLLED_BACK:
        if flag and canary is not None:
            version_flagged_emit(playbook=playbook, version=canary)
        version_rolled_back_emit(
            playbook=playbook,
            version=rollout.canary,
            production=rollout.production,
            by=actor,
            reason=reason,
            verdict=verdict,
        )
    return rollout


# --- the cohorts' runs and the verdict ----------------------------------------------


def _cohort_rows(rollout: Rollout, playbook: Playbook):
    """(cohort, success, score) of the finished runs naming exactly one of the two
    versions, created since the rollout started (until it ended), in arrival order."""
    tags = {
        f"{playbook.slug}@{rollout.canary}": CANARY,
        f"{playbook.slug}@{rollout.production}": PRODUCTION,
    }
    qs = Trajectory.objects.filter(
        namespace_id=playbook.namespace_id, created_at__gte=rollout.started_at
    ).exclude(status=RunStatus.RUNNING)
    if rollout.ended_at is not None:
        qs = qs.filter(created_at__lte=rollout.ended_at)
    lookup = (
        "playbook_versions__contains"
        if connection.vendor == "postgresql"
        else "playbook_versions__icontains"
    )
    match = Q()
    for tag in tags:
        match |= Q(**{lookup: [tag] if lookup.endswith("__contains") else tag})
    rows = qs.filter(match).order_by("created_at", "id")
    for status, effective, success_score, used in rows.values_list(
        "status", "effective_score", "success_score", "playbook_versions"
    ):
        named = {tags[tag] for tag in (used or []) if tag in tags}
        if len(named) != 1:
            continue
        score = effective if effective is not None else success_score
        yield named.pop(), status == RunStatus.SUCCESS, score


def rollout_arms(*, rollout: Rollout, playbook: Playbook) -> tuple[dict, dict]:
    """({"canary": Arm, "production": Arm} over all runs, the same over the first
    min_runs_per_arm runs of each cohort) in one query."""
    arms = {CANARY: Arm(), PRODUCTION: Arm()}
    first = {CANARY: Arm(), PRODUCTION: Arm()}
    for cohort, success, score in _cohort_rows(rollout, playbook):
        arms[cohort].add(success, score)
        if first[cohort].runs < rollout.min_runs_per_arm:
            first[cohort].add(success, score)
    return arms, first


def rollout_verdict(*, rollout: Rollout, playbook: Playbook) -> dict:
    """The verdict as of now (read-only: the stored horizon, else the horizon the
    runs so far give, once both cohorts reached the minimum)."""
    arms, first = rollout_arms(rollout=rollout, playbook=playbook)
    horizon = rollout.horizon or None
    if horizon is None and all(
        arm.runs >= rollout.min_runs_per_arm for arm in first.values()
    ):
        horizon = horizon_analysis(
            canary=first[CANARY], production=first[PRODUCTION], margin=rollout.margin
        )
    result = verdict_rule(
        canary=arms[CANARY],
        production=arms[PRODUCTION],
        horizon=horizon,
        min_runs_per_arm=rollout.min_runs_per_arm,
        margin=rollout.margin,
        share=rollout.share,
    )
    result["arms"] = {
        CANARY: {"version": rollout.canary, **arms[CANARY].summary()},
        PRODUCTION: {"version": rollout.production, **arms[PRODUCTION].summary()},
    }
    result["score"] = score_interval(
        canary=arms[CANARY],
        production=arms[PRODUCTION],
        min_runs_per_arm=rollout.min_runs_per_arm,
        share=rollout.share,
    )
    result["rule"] = rule_text(
        min_runs_per_arm=rollout.min_runs_per_arm, margin=rollout.margin
    )
    result["evaluated_at"] = timezone.now().isoformat()
    return result


# --- per-strategy outcomes -----------------------------------------------------------


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


def _runs_matching(sessions: set[str], externals: set[str]) -> Q:
    q = Q(pk__in=[])
    if sessions:
        q |= Q(session_id__in=sessions)
    if externals:
        q |= Q(external_id__in=externals)
    return q
