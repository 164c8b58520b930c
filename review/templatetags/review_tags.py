"""Small display helpers for the console templates."""
from django import template
from django.utils import timezone

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
    try:
        return mapping.get(key)
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
