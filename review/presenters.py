"""What the console shows: apply previews, recall previews, the lesson shape, guidelines."""

import copy

from learning.lessons import lesson_parse
from learning.models import SHAPED_KINDS, CandidateStatus
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


def candidate_shape(candidate) -> dict:
    """The candidate's lesson shape as the console shows it: stored, or (a row from
    before the shape) read from its text now — then marked classified."""
    if candidate.directive or candidate.kind not in SHAPED_KINDS:
        return {
            "polarity": candidate.polarity,
            "when": candidate.when,
            "directive": candidate.directive,
            "why": candidate.why,
            "classified": candidate.shape_classified,
        }
    parsed = lesson_parse(candidate.content, kind=candidate.kind).shape
    return {
        "polarity": parsed.polarity,
        "when": parsed.when,
        "directive": parsed.directive,
        "why": candidate.why,
        "classified": True,
    }


_MARKDOWN = None


def markdown_html(text: str) -> str:
    """CommonMark to HTML with raw HTML off (it is escaped) and markdown-it's link
    validation (no javascript:, vbscript:, file: or non-image data: URLs)."""
    global _MARKDOWN
    if _MARKDOWN is None:
        from markdown_it import MarkdownIt

        _MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")
    return _MARKDOWN.render(text)


def preview_candidate(candidate):
    """The candidate as recall would rank it once applied: a row from before the
    lesson shape gets the shape read from its text (not saved)."""
    if candidate.directive or candidate.kind not in SHAPED_KINDS:
        return candidate
    shape = candidate_shape(candidate)
    clone = copy.copy(candidate)
    clone.polarity, clone.when, clone.directive = (
        shape["polarity"],
        shape["when"],
        shape["directive"],
    )
    return clone


def recall_comparison(
    *, playbook, task: str, task_type: str, budget_tokens: int, candidate=None
) -> dict:
    """What an agent gets for `task` from the current version — and, with
    `candidate`, as if it were applied — as `playbooks.recall.recall_preview` ranks it
    (nothing logged). Lines are marked "new" (only with the candidate) or "dropped"
    (only now: pushed out of the budget, or replaced)."""
    from playbooks.recall import recall_preview

    now = recall_preview(
        playbook=playbook, task=task, task_type=task_type, budget_tokens=budget_tokens
    )
    result = {"now": now, "now_lines": _context_lines(now.context, set())}
    if candidate is not None:
        applied = recall_preview(
            playbook=playbook,
            task=task,
            task_type=task_type,
            budget_tokens=budget_tokens,
            candidate=preview_candidate(candidate),
        )
        before = set(now.context.splitlines())
        after = set(applied.context.splitlines())
        result["with"] = applied
        result["with_lines"] = _context_lines(applied.context, before, mark="new")
        result["now_lines"] = _context_lines(now.context, after, mark="dropped")
        result["included"] = any(
            item["key"] == f"candidate-{candidate.pk}" for item in applied.items
        )
    return result


def _context_lines(context: str, other: set, mark: str = "") -> list[tuple[str, str]]:
    lines = context.splitlines()
    if not mark:
        return [("", line) for line in lines]
    return [
        ("" if i == 0 or line in other else mark, line) for i, line in enumerate(lines)
    ]
