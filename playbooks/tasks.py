"""Django-Q2 tasks (scheduled by setup_schedules): thin loops over the services."""

import logging

from learning.models import Namespace
from playbooks import curation, rollout
from playbooks.models import Playbook, RolloutState

logger = logging.getLogger(__name__)


def _playbooks(playbook_id: int | None):
    qs = Playbook.objects.select_related("namespace").order_by("pk")
    return qs.filter(pk=playbook_id) if playbook_id else qs


def playbooks_curate(playbook_id: int | None = None) -> dict:
    """Merge near-duplicates, retire harmful, decay unused strategies: per playbook."""
    changed = 0
    for playbook in _playbooks(playbook_id):
        report = curation.playbook_curate(playbook=playbook)
        changed += report["version"] is not None
    return {"playbooks_changed": changed}


def memories_consolidate(namespace_id: int | None = None) -> dict:
    """Summarise groups of low-importance memories, per namespace."""
    qs = Namespace.objects.order_by("pk")
    if namespace_id:
        qs = qs.filter(pk=namespace_id)
    created = sum(len(curation.memories_consolidate(namespace=ns)) for ns in qs)
    return {"summaries_created": created}


def quality_gate_evaluate(playbook_id: int | None = None) -> dict:
    """The verdict on every running rollout (scheduled every minute): promote, roll
    back, or keep the figures. Playbooks without a running rollout cost nothing."""
    counts = {"evaluated": 0, "promoted": 0, "rolled_back": 0}
    running = (
        _playbooks(playbook_id).filter(rollouts__state=RolloutState.RUNNING).distinct()
    )
    for playbook in running:
        verdict = rollout.rollout_gate_evaluate(playbook=playbook)
        if verdict is None:
            continue
        counts["evaluated"] += 1
        if verdict["acted"] and verdict["outcome"] == "promote":
            counts["promoted"] += 1
        elif verdict["acted"] and verdict["outcome"] == "roll_back":
            counts["rolled_back"] += 1
    return counts
