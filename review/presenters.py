"""What the console shows of an apply preview: diff items and lines for templates."""

from learning.models import CandidateStatus
from playbooks import apply


def apply_preview(candidate, *, replaces: int | None = None) -> dict:
    """The diff approving would create, shaped for the template (`replaces`: as a
    replacement of that strategy)."""
    if candidate.status not in (CandidateStatus.PENDING, CandidateStatus.APPLY_FAILED):
        return {}
    try:
        preview = apply.candidate_apply_preview(candidate=candidate, replaces=replaces)
    except apply.ApplyFailed as exc:
        return {"error": str(exc)}
    diff = preview.get("diff")
    if isinstance(diff, dict):
        preview["diff_items"] = [
            (cls, diff_text(item))
            for cls, key in (("add", "added"), ("del", "removed"), ("chg", "changed"))
            for item in diff.get(key) or []
        ]
    if isinstance(diff, str):
        preview["diff_lines"] = [
            (
                "add"
                if line.startswith("+") and not line.startswith("+++")
                else "del"
                if line.startswith("-") and not line.startswith("---")
                else "hunk"
                if line.startswith("@@")
                else "",
                line,
            )
            for line in diff.splitlines()
        ]
    return preview


def diff_text(item) -> str:
    if not isinstance(item, dict):
        return str(item)
    text = item.get("description") or item.get("content") or item.get("text") or ""
    fields = item.get("fields") or {}
    if fields:
        changes = ", ".join(
            f"{name}: {change.get('from')} → {change.get('to')}"
            if isinstance(change, dict)
            else f"{name}: {change}"
            for name, change in fields.items()
        )
        text = f"{text} ({changes})" if text else changes
    return text or str(item)
