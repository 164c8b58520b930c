"""Small display helpers for the console templates."""

from functools import lru_cache

from django import template
from django.urls import get_script_prefix, reverse
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter
def age(value, now=None) -> str:
    """A compact age: 45s, 12m, 3h, 5d."""
    if not value:
        return ""
    seconds = max(int(((now or timezone.now()) - value).total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@register.filter
def pct(value) -> str:
    try:
        return f"{float(value) * 100:.0f}%"
    except (TypeError, ValueError):
        return "–"


@register.filter
def get(mapping, key):
    """mapping[key], or mapping[str(key)]: a mapping also sent as JSON (the deny
    dialog's guidance) is keyed by strings, and templates look it up by an id."""
    try:
        value = mapping.get(key)
        if value is None and not isinstance(key, str):
            value = mapping.get(str(key))
        return value
    except AttributeError:
        return None


@register.filter
def kind_label(value: str) -> str:
    return (value or "").replace("_", " ")


@register.simple_tag
def lease_holder(candidate, now, user):
    """The other reviewer holding an unexpired lease on `candidate`, or ""."""
    if (
        candidate.leased_by_id
        and candidate.leased_by_id != getattr(user, "pk", None)
        and candidate.lease_until
        and candidate.lease_until > now
    ):
        return candidate.leased_by.get_username()
    return ""


@lru_cache(maxsize=8)
def _candidate_prefix(script_prefix: str) -> str:
    return reverse("review:candidate", args=[0])[: -len("0/")]


@register.simple_tag
def cand_url(pk, action: str = "") -> str:
    """A candidate's console URL (or one of its action URLs) without a full `reverse`
    per call: queue rows need several per row, and reversing is the costliest part of
    rendering a page of 50."""
    prefix = _candidate_prefix(get_script_prefix())
    return f"{prefix}{pk}/{action}/" if action else f"{prefix}{pk}/"


@register.filter
def num2(value) -> str:
    """Two decimals without the locale machinery of floatformat (cheap in long lists)."""
    try:
        return f"{float(value):.2f}"
    except (TypeError, ValueError):
        return "–"


@register.filter
def clip(value, length: int = 180) -> str:
    """truncatechars without the translation lookup it makes on every call."""
    text = str(value or "")
    return text if len(text) <= length else text[: length - 1].rstrip() + "…"


@register.simple_tag
def timeline_window(steps, highlight, context: int = 1, head: int = 4):
    """The steps worth showing in an evidence excerpt: the highlighted ones with
    `context` steps around them (or the first `head` steps without highlights), and
    gaps standing for the steps left out: [{"step": s} | {"gap": n}, ...]."""
    steps = list(steps)
    marked = set(highlight or [])
    if marked:
        keep = {
            s.index for s in steps if any(abs(s.index - h) <= context for h in marked)
        }
    else:
        keep = {s.index for s in steps[:head]}
    items, gap = [], 0
    for step in steps:
        if step.index in keep:
            if gap:
                items.append({"gap": gap})
                gap = 0
            items.append({"step": step})
        else:
            gap += 1
    if gap:
        items.append({"gap": gap})
    return items


@register.simple_tag
def word_diff(old, new):
    """An edit as one text with the removed words in <del> and the added in <ins>."""
    from playbooks.versions import word_diff as diff

    html = []
    for op, text in diff(str(old or ""), str(new or "")):
        if op:
            html.append(f"<{op}>{escape(text)}</{op}>")
        else:
            html.append(escape(text))
    return mark_safe("".join(html))


@register.filter
def markdown(text) -> str:
    """Guidelines as HTML: CommonMark with raw HTML disabled (escaped) and unsafe link
    schemes refused, so an admin's text cannot inject script into reviewers' pages."""
    from review.presenters import markdown_html

    return mark_safe(markdown_html(text or ""))


@register.filter
def join_pks(objects) -> str:
    """The objects' ids, comma-separated ("12,15")."""
    return ",".join(str(o.pk) for o in objects or [])


@register.simple_tag
def steps_label(indexes) -> str:
    """ "Step 4 shows" / "Steps 1 and 4 show" / "Steps 1, 4 and 7 show"."""
    numbers = [str(int(i)) for i in indexes or [] if str(i).lstrip("-").isdigit()]
    if not numbers:
        return ""
    if len(numbers) == 1:
        return f"Step {numbers[0]} shows"
    return f"Steps {', '.join(numbers[:-1])} and {numbers[-1]} show"


TEXT_FIELDS = frozenset(
    {"content", "directive", "when", "why", "rationale", "text", "description"}
)


@register.filter
def is_text_field(name) -> bool:
    """Fields whose edits are shown as a word-level diff."""
    return name in TEXT_FIELDS


@register.filter
def split_words(value) -> list[str]:
    return str(value or "").split()
