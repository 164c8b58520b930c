"""A strategy's helpful/harmful counters from reflection: each run that recalled a
strategy and was reflected on by a model says whether it helped (helpful), hurt
(harmful) or did not matter (neutral). Recall's usefulness term reads the counters."""

import uuid
from collections import Counter
from collections.abc import Iterable

from django.db.models import F
from django.db.models.functions import Greatest

from playbooks.models import Strategy

_FIELDS = {"helpful": "helpful_count", "harmful": "harmful_count"}


def strategy_counters_add(
    *, namespace_id: int, tags: Iterable, replacing: Iterable = ()
) -> int:
    """Add one to the helpful or harmful counter of each tagged strategy (`tags`: items
    with `key` and `tag`, neutral tags count nothing). `replacing` are the tags an
    earlier reflection of the same run gave: they are taken back first, so reflecting
    a run again counts its verdicts once. Only strategies of `namespace_id` change;
    counters never go below zero. The strategies' `updated_at` is left alone (it is
    recall's recency: a verdict is not a change of the lesson). Returns the number of
    rows updated."""
    delta: Counter = Counter()
    for item, sign in [(t, 1) for t in tags] + [(t, -1) for t in replacing]:
        key, tag = _key_tag(item)
        if key and tag in _FIELDS:
            delta[(key, _FIELDS[tag])] += sign
    updated = 0
    for (key, field), change in delta.items():
        if change == 0:
            continue
        updated += Strategy.objects.filter(
            playbook__namespace_id=namespace_id, key=key
        ).update(**{field: Greatest(F(field) + change, 0)})
    return updated


def _key_tag(item) -> tuple[str, str]:
    if isinstance(item, dict):
        key, tag = item.get("key"), item.get("tag")
    else:
        key, tag = getattr(item, "key", ""), getattr(item, "tag", "")
    try:
        key = str(uuid.UUID(str(key)))
    except ValueError:
        return "", ""
    return key, str(tag or "")


def strategy_tags_of(items: Iterable) -> list[dict]:
    """The strategy tags stored among a reflection's observations."""
    return [
        item
        for item in items or []
        if isinstance(item, dict) and item.get("kind") == "strategy_tag"
    ]
