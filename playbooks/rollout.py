"""Staged rollout, the actions: a playbook's rollout policy, promoting or aborting the
canary (by an admin, or by the quality gate on its verdict) and the state the API and
the console show. Labels, cohorts and the decision rule live in `playbooks.quality`;
see its docstring for the design.

Every action takes the playbook's row lock (the one version commits take), so an
approval folding a new canary in and the gate deciding on the old one never both win:
the gate acts only on the rollout it evaluated, if that one is still running."""

from django.db import transaction

from playbooks.models import Playbook, PlaybookVersion, Rollout, RolloutPolicy
from playbooks.models import RolloutState as State
from playbooks.quality import (
    CANARY,
    GATE_ACTOR,
    PRODUCTION,
    production_set,
    rollout_close,
    rollout_latest,
    rollout_running,
    rollout_verdict,
    rule_text,
)
from playbooks.versions import PlaybookError, playbook_lock, playbook_restore_content
from review.trail import audit_event_record

MAX_MIN_RUNS = 1_000_000


def _number(value, field: str, *, low: float, high: float, integer: bool = False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PlaybookError("A number.", field=field)
    if integer and not float(value).is_integer():
        raise PlaybookError("A whole number.", field=field)
    if not low <= value <= high:
        raise PlaybookError(f"From {low:g} to {high:g}.", field=field)
    return int(value) if integer else float(value)


def rollout_policy_set(
    *, playbook: Playbook, share, min_runs_per_arm, margin, actor: str
) -> RolloutPolicy:
    """Set (create or replace) the policy. It applies to rollouts that start from now
    on; a running one keeps the parameters it started with."""
    share = _number(share, "share", low=0, high=1)
    if share in (0, 1):
        raise PlaybookError(
            "Between 0 and 1: some sessions on each side.", field="share"
        )
    min_runs = _number(
        min_runs_per_arm, "min_runs_per_arm", low=1, high=MAX_MIN_RUNS, integer=True
    )
    margin = _number(margin, "margin", low=0, high=0.5)
    with transaction.atomic():
        playbook = playbook_lock(playbook=playbook)
        before = RolloutPolicy.objects.filter(playbook=playbook).first()
        policy, _ = RolloutPolicy.objects.update_or_create(
            playbook=playbook,
            defaults={
                "share": share,
                "min_runs_per_arm": min_runs,
                "margin": margin,
                "updated_by": actor,
            },
        )
        audit_event_record(
            namespace=playbook.namespace,
            actor=actor,
            action="rollout_policy_set",
            target_type="playbook",
            target_id=playbook.slug,
            data={
                "from": _policy_dict(before),
                "to": _policy_dict(policy),
            },
        )
    return policy


def rollout_policy_remove(*, playbook: Playbook, actor: str) -> bool:
    """Remove the policy (new versions become production at once again); False when
    there was none. Refused while a rollout runs: promote or abort it first."""
    with transaction.atomic():
        playbook = playbook_lock(playbook=playbook)
        policy = RolloutPolicy.objects.filter(playbook=playbook).first()
        if policy is None:
            return False
        if rollout_running(playbook=playbook) is not None:
            raise PlaybookError(
                "A rollout is running: promote or abort it first.", code="conflict"
            )
        before = _policy_dict(policy)
        policy.delete()
        audit_event_record(
            namespace=playbook.namespace,
            actor=actor,
            action="rollout_policy_remove",
            target_type="playbook",
            target_id=playbook.slug,
            data={"from": before},
        )
    return True


def _policy_dict(policy: RolloutPolicy | None) -> dict | None:
    if policy is None:
        return None
    return {
        "share": policy.share,
        "min_runs_per_arm": policy.min_runs_per_arm,
        "margin": policy.margin,
    }


def _running_or_refuse(playbook: Playbook, expected: int | None) -> Rollout:
    running = rollout_running(playbook=playbook)
    if running is None:
        raise PlaybookError("No rollout is running.", code="conflict")
    if expected is not None and running.pk != expected:
        raise PlaybookError(
            "The rollout changed meanwhile (a newer canary).", code="conflict"
        )
    return running


@transaction.atomic
def rollout_promote(
    *,
    playbook: Playbook,
    actor: str,
    note: str = "",
    verdict: dict | None = None,
    expected: int | None = None,
) -> Rollout:
    """The canary becomes production (an admin at any time, or the gate's verdict)."""
    playbook = playbook_lock(playbook=playbook)
    running = _running_or_refuse(playbook, expected)
    reason = (
        (f"promoted by {actor}: {note}" if note else f"promoted by {actor}")
        if verdict is None
        else f"promoted by the quality gate: {verdict['reason']}"
    )
    production_set(
        playbook=playbook,
        number=running.canary,
        left=f"replaced by version {running.canary} ({reason})",
    )
    playbook.save(update_fields=["production_version", "updated_at"])
    return rollout_close(
        rollout=running,
        playbook=playbook,
        state=State.PROMOTED,
        actor=actor,
        reason=reason,
        verdict=verdict,
    )


@transaction.atomic
def rollout_abort(
    *,
    playbook: Playbook,
    actor: str,
    note: str = "",
    verdict: dict | None = None,
    expected: int | None = None,
) -> Rollout:
    """Drop the canary: the live strategies go back to production's content (so the
    next change starts from what agents get), production stays. With `verdict` (the
    gate found the canary worse) the canary's version is flagged."""
    playbook = playbook_lock(playbook=playbook)
    running = _running_or_refuse(playbook, expected)
    production = PlaybookVersion.objects.get(
        playbook=playbook, number=playbook.production_version
    )
    playbook_restore_content(playbook=playbook, content=production.content)
    playbook.current_version = production.number
    playbook.save(update_fields=["current_version", "updated_at"])
    reason = (
        (f"aborted by {actor}: {note}" if note else f"aborted by {actor}")
        if verdict is None
        else f"rolled back by the quality gate: {verdict['reason']}"
    )
    return rollout_close(
        rollout=running,
        playbook=playbook,
        state=State.ROLLED_BACK,
        actor=actor,
        reason=reason,
        verdict=verdict,
        flag=verdict is not None,
    )


def rollout_gate_evaluate(
    *, playbook: Playbook, actor: str = GATE_ACTOR
) -> dict | None:
    """The verdict on the playbook's running rollout, acted on: promote, roll back, or
    keep the figures for the console. The horizon analysis is stored the first time
    it is available, so later looks read the same one. None when nothing runs."""
    running = rollout_running(playbook=playbook)
    if running is None:
        return None
    verdict = rollout_verdict(rollout=running, playbook=playbook)
    updates = {"verdict": verdict}
    if not running.horizon and verdict["horizon"]:
        updates["horizon"] = verdict["horizon"]
    Rollout.objects.filter(pk=running.pk, state=State.RUNNING).update(**updates)
    action = {"promote": rollout_promote, "roll_back": rollout_abort}.get(
        verdict["outcome"]
    )
    if action is not None:
        try:
            action(playbook=playbook, actor=actor, verdict=verdict, expected=running.pk)
        except PlaybookError:  # superseded or ended meanwhile: its verdict is void
            return {**verdict, "acted": False}
    return {**verdict, "acted": action is not None}


# --- what the API and the console show ----------------------------------------------


def rollout_status(*, playbook: Playbook) -> dict:
    """Labels, policy and the latest rollout with its cohorts and decision (live
    figures while it runs, the final ones after). A fixed number of queries."""
    policy = RolloutPolicy.objects.filter(playbook_id=playbook.pk).first()
    latest = rollout_latest(playbook=playbook)
    running = latest if latest is not None and latest.state == State.RUNNING else None
    decision = None
    if running is not None:
        decision = rollout_verdict(rollout=running, playbook=playbook)
    elif latest is not None:
        decision = latest.verdict or None
    if latest is None:
        state = "none"
    elif latest.state == State.SUPERSEDED:
        state = "none"
    else:
        state = latest.state
    share = running.share if running else (policy.share if policy else None)
    return {
        "playbook": playbook.slug,
        "production": playbook.production_version,
        "canary": running.canary if running else None,
        "share": share,
        "state": state,
        "policy": _policy_dict(policy),
        "rollout": _rollout_dict(latest),
        "arms": (decision or {}).get("arms"),
        "decision": decision,
        "rule": rule_text(
            min_runs_per_arm=(running or policy).min_runs_per_arm,
            margin=(running or policy).margin,
        )
        if (running or policy)
        else None,
    }


def _rollout_dict(rollout: Rollout | None) -> dict | None:
    if rollout is None:
        return None
    return {
        "id": rollout.pk,
        "state": rollout.state,
        "canary": rollout.canary,
        "production": rollout.production,
        "share": rollout.share,
        "min_runs_per_arm": rollout.min_runs_per_arm,
        "margin": rollout.margin,
        "started_at": rollout.started_at.isoformat(),
        "ended_at": rollout.ended_at.isoformat() if rollout.ended_at else None,
        "ended_by": rollout.ended_by,
        "reason": rollout.reason,
    }


__all__ = [
    "CANARY",
    "PRODUCTION",
    "MAX_MIN_RUNS",
    "rollout_abort",
    "rollout_gate_evaluate",
    "rollout_policy_remove",
    "rollout_policy_set",
    "rollout_promote",
    "rollout_status",
]
