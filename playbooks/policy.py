"""The namespace's hygiene policy (which tools and hosts agents may use, which paths
and branches are sensitive: read by the hygiene audit) and the agent's own policy
(its system prompt or policy document: candidates that contradict it are blocked)."""

from typing import Any

from django.db import transaction

from learning.models import Namespace
from learning.queue import task_enqueue_on_commit
from playbooks.models import (
    AgentPolicy,
    HygienePolicy,
    Playbook,
)
from playbooks.versions import PlaybookError
from review.trail import audit_event_record

POLICY_FIELDS = (
    "allowed_tools",
    "denied_tools",
    "egress_allowlist",
    "sensitive_paths",
    "protected_branches",
)


def _clean_list(value, field: str) -> list[str]:
    if isinstance(value, str):
        value = [v for v in value.replace(",", "\n").splitlines()]
    if not isinstance(value, (list, tuple)):
        raise PlaybookError("A list of strings.", field=field)
    out = []
    for item in value:
        if not isinstance(item, str):
            raise PlaybookError("A list of strings.", field=field)
        item = item.strip()
        if item and item not in out:
            out.append(item)
    return out


@transaction.atomic
def policy_update(*, namespace: Namespace, actor: str, **changes: Any) -> HygienePolicy:
    """Edit the namespace's hygiene policy; the audit row carries the diff."""
    unknown = set(changes) - set(POLICY_FIELDS)
    if unknown:
        raise PlaybookError(
            f"Unknown field {sorted(unknown)[0]}.", field=sorted(unknown)[0]
        )
    cleaned = {k: _clean_list(v, k) for k, v in changes.items()}
    policy, _ = HygienePolicy.objects.select_for_update().get_or_create(
        namespace=namespace
    )
    diff = {}
    for key, value in cleaned.items():
        before = list(getattr(policy, key) or [])
        if before != value:
            diff[key] = {"from": before, "to": value}
            setattr(policy, key, value)
    policy.updated_by = actor
    policy.save()
    if diff:
        audit_event_record(
            namespace=namespace,
            actor=actor,
            action="policy_edit",
            target_type="policy",
            target_id=namespace.slug,
            data={"diff": diff},
        )
    return policy


MAX_AGENT_POLICY = 100_000


@transaction.atomic
def agent_policy_set(
    *,
    namespace: Namespace,
    text: str,
    actor: str,
    playbook: Playbook | None = None,
    source: str = "hand",
) -> AgentPolicy | None:
    """Set (or, with empty text, remove) the agent's policy of a namespace or one of
    its playbooks; audited with the text's length before and after. Returns the policy
    (None once removed)."""
    if playbook is not None and playbook.namespace_id != namespace.pk:
        raise PlaybookError(
            "The playbook belongs to another namespace.", field="playbook"
        )
    text = (text or "").strip()
    if len(text) > MAX_AGENT_POLICY:
        raise PlaybookError(f"At most {MAX_AGENT_POLICY} characters.", field="text")
    policy = (
        AgentPolicy.objects.select_for_update()
        .filter(namespace=namespace, playbook=playbook)
        .first()
    )
    before = policy.text if policy else ""
    if before == text:
        return policy
    if not text:
        policy.delete()
        policy = None
    elif policy is None:
        policy = AgentPolicy.objects.create(
            namespace=namespace,
            playbook=playbook,
            text=text,
            source=source,
            updated_by=actor,
        )
    else:
        policy.text, policy.source, policy.updated_by = text, source, actor
        policy.save()
    audit_event_record(
        namespace=namespace,
        actor=actor,
        action="agent_policy_edit",
        target_type="playbook" if playbook else "namespace",
        target_id=playbook.slug if playbook else namespace.slug,
        data={"source": source, "chars_before": len(before), "chars_after": len(text)},
    )
    task_enqueue_on_commit(
        "learning.audit_tasks.agent_policy_reaudit_task",
        namespace.pk,
        playbook.pk if playbook else None,
        task_name=f"reaudit-policy-{namespace.pk}-{playbook.pk if playbook else 0}",
        group="audit",
    )
    return policy
