"""The namespace's hygiene policy: which tools and hosts agents may use, which paths
and branches are sensitive (read by the hygiene audit)."""

from typing import Any

from django.db import transaction

from learning.models import Namespace
from playbooks.models import (
    HygienePolicy,
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
