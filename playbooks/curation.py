"""Curation of playbooks and consolidation of memories (scheduled; see tasks.py).

Curating a playbook, in one new version with its diff (nothing changes: no version):
- merge near-duplicate strategies of the same type, by the duplicate audit's rule
  (`learning.text.similarity.is_near_duplicate`: never a pair with opposite meaning or
  a changed value): the survivor keeps the summed helpful/harmful counts, the
  union of the evidence and the higher confidence; the others are retired;
- retire strategies whose harmful count outweighs the helpful one (with at least
  HARMFUL_MIN harmful observations);
- decay strategies not recalled for DECAY_DAYS (nor changed in that time, so one decay
  per idle period): confidence x DECAY_FACTOR, retired below RETIRE_BELOW.

Consolidating memories: groups of at least MIN_GROUP active low-importance memories
(importance < LOW_IMPORTANCE) with the same scope, user, kind and entity are summarised
into one `summary` memory (Claude when ANTHROPIC_API_KEY is set, else — or when the
call fails — an offline summariser); the originals are deactivated and point at it.
High-importance memories are never touched.
"""

import logging
from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from learning.models import Namespace
from learning.text.similarity import LessonText, content_stems, is_near_duplicate
from playbooks import versions
from playbooks.models import ChangeKind, Memory, MemoryKind, Playbook, Strategy
from review.trail import audit_event_record

logger = logging.getLogger(__name__)

HARMFUL_MIN = 3
DECAY_DAYS = 60
DECAY_FACTOR = 0.8
RETIRE_BELOW = 0.15
LOW_IMPORTANCE = 0.4
MIN_GROUP = 3
CURATION_ACTOR = "system:curation"


def _lesson(strategy: Strategy) -> LessonText:
    """The strategy as the duplicate rule reads it: its text and its lesson shape
    (the polarity is stated, never inferred from helpful/harmful)."""
    return LessonText(
        text=strategy.description,
        polarity=strategy.polarity or "",
        when=strategy.when or "",
        directive=strategy.directive or "",
        kind="strategy",
    )


class _UnionFind:
    def __init__(self, ids):
        self.parent = {pk: pk for pk in ids}

    def find(self, x):
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def join(self, a, b) -> None:
        self.parent[self.find(b)] = self.find(a)


def _pairs_to_compare(strategies: list[Strategy]):
    """Pairs of strategies of one type that share a stemmed word (an inverted index
    keeps it far from all-pairs on big playbooks); words shared by more than 200 say
    little, rarer ones pair them up."""
    index: dict[tuple[str, str], list[int]] = defaultdict(list)
    for s in strategies:
        for token in content_stems(s.description):
            index[(s.type, token)].append(s.pk)
    seen = set()
    for ids in index.values():
        if len(ids) > 200:
            continue
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                if (a, b) not in seen:
                    seen.add((a, b))
                    yield a, b


def _duplicate_groups(strategies: list[Strategy]) -> list[list[Strategy]]:
    """Groups of strategies that are the same lesson by the one rule the duplicate
    audit uses (`learning.text.similarity.is_near_duplicate`)."""
    by_id = {s.pk: s for s in strategies}
    groups = _UnionFind(by_id)
    for a, b in _pairs_to_compare(strategies):
        if groups.find(a) == groups.find(b):
            continue
        first, second = by_id[a], by_id[b]
        if first.type == second.type and is_near_duplicate(
            _lesson(first), _lesson(second)
        ):
            groups.join(a, b)
    members: dict[int, list[Strategy]] = defaultdict(list)
    for s in strategies:
        members[groups.find(s.pk)].append(s)
    return [g for g in members.values() if len(g) > 1]


def playbook_curate(
    *, playbook: Playbook, actor: str = CURATION_ACTOR, now: datetime | None = None
) -> dict:
    """Merge, retire and decay (see the module docstring); one version if anything
    changed. Returns what it did. A playbook whose rollout is running is left alone
    (a curation version would fold into the canary and restart the experiment)."""
    now = now or timezone.now()
    report = {
        "playbook": playbook.slug,
        "merged": [],
        "retired_harmful": [],
        "decayed": [],
        "retired_stale": [],
        "version": None,
    }
    with transaction.atomic():
        playbook = versions.playbook_lock(playbook=playbook)
        if playbook.canary_version is not None:
            report["skipped"] = "a rollout is running"
            return report
        active = list(
            Strategy.objects.filter(playbook=playbook, active=True).order_by("id")
        )
        retired: set[int] = set()
        for group in _duplicate_groups(active):
            survivor = max(
                group,
                key=lambda s: (s.helpful_count - s.harmful_count, s.confidence, -s.pk),
            )
            evidence = list(survivor.evidence or [])
            for other in group:
                if other.pk == survivor.pk:
                    continue
                survivor.helpful_count += other.helpful_count
                survivor.harmful_count += other.harmful_count
                survivor.confidence = max(survivor.confidence, other.confidence)
                evidence += [e for e in other.evidence or [] if e not in evidence]
                other.active = False
                other.save(update_fields=["active", "updated_at"])
                retired.add(other.pk)
                report["merged"].append({"into": survivor.pk, "retired": other.pk})
            survivor.evidence = evidence
            survivor.save()
        stale_before = now - timedelta(days=DECAY_DAYS)
        for s in active:
            if s.pk in retired:
                continue
            if s.harmful_count >= HARMFUL_MIN and s.harmful_count > s.helpful_count:
                s.active = False
                s.save(update_fields=["active", "updated_at"])
                report["retired_harmful"].append(s.pk)
                continue
            last_used = s.last_recalled_at or s.created_at
            if last_used < stale_before and s.updated_at < stale_before:
                s.confidence = round(s.confidence * DECAY_FACTOR, 4)
                if s.confidence < RETIRE_BELOW:
                    s.active = False
                    report["retired_stale"].append(s.pk)
                else:
                    report["decayed"].append(s.pk)
                s.save(update_fields=["confidence", "active", "updated_at"])
        report["version"] = _curation_commit(playbook, report, actor)
    return report


def _curation_commit(playbook: Playbook, report: dict, actor: str) -> int | None:
    """One version for what curation changed (None when nothing did)."""
    if not any(
        report[k] for k in ("merged", "retired_harmful", "decayed", "retired_stale")
    ):
        return None
    note = (
        f"curation: {len(report['merged'])} merged, "
        f"{len(report['retired_harmful'])} retired as harmful, "
        f"{len(report['decayed'])} decayed, "
        f"{len(report['retired_stale'])} retired as stale"
    )
    kind = (
        ChangeKind.MERGE
        if not any(report[k] for k in ("retired_harmful", "decayed", "retired_stale"))
        else ChangeKind.CURATION
    )
    version = versions.playbook_version_commit(
        playbook=playbook, change_kind=kind, actor=actor, note=note, allow_empty=True
    )
    return version.number


# --- memories ------------------------------------------------------------------------


def summarise_offline(texts: list[str]) -> str:
    """Deterministic: the distinct notes, in order, as one line each."""
    seen, lines = set(), []
    for text in texts:
        key = " ".join(text.lower().split()).rstrip(".")
        if key and key not in seen:
            seen.add(key)
            lines.append("- " + " ".join(text.split()))
    return f"Summary of {len(texts)} notes:\n" + "\n".join(lines)


def summarise_with_claude(texts: list[str]) -> str:
    import anthropic

    client = anthropic.Anthropic(
        api_key=settings.ANTHROPIC_API_KEY,
        base_url=settings.ANTHROPIC_BASE_URL,
        timeout=settings.ANTHROPIC_TIMEOUT,
    )
    notes = "\n".join(f"- {t}" for t in texts)
    message = client.messages.create(
        model=settings.ANTHROPIC_MODEL,
        max_tokens=400,
        system="You merge an agent's memory notes into one short, faithful summary. Keep "
        "every distinct fact or preference; drop repetition; no preamble.",
        messages=[{"role": "user", "content": f"Notes:\n{notes}\n\nSummary:"}],
    )
    text = "".join(getattr(block, "text", "") for block in message.content).strip()
    if not text:
        raise ValueError("empty summary")
    return text


def summarise(texts: list[str]) -> tuple[str, str]:
    """(summary, summariser name): Claude when configured, offline otherwise or on
    any failure."""
    if settings.ANTHROPIC_API_KEY:
        try:
            return summarise_with_claude(texts), settings.ANTHROPIC_MODEL
        except Exception as exc:  # the summary must not depend on the network
            logger.warning("memory summary by Claude failed, using offline: %s", exc)
    return summarise_offline(texts), "offline"


def memories_consolidate(
    *, namespace: Namespace, actor: str = CURATION_ACTOR, summariser=None
) -> list[Memory]:
    """Summarise groups of low-importance memories (see module docstring)."""
    groups: dict[tuple, list[Memory]] = defaultdict(list)
    rows = Memory.objects.filter(
        namespace=namespace,
        active=True,
        importance__lt=LOW_IMPORTANCE,
        kind__in=[MemoryKind.PREFERENCE, MemoryKind.DURABLE_FACT],
    ).order_by("created_at", "id")
    for memory in rows:
        groups[(memory.scope, memory.user_id, memory.kind, memory.entity)].append(
            memory
        )
    created = []
    for (scope, user_id, kind, entity), members in groups.items():
        if len(members) < MIN_GROUP:
            continue
        texts = [m.content for m in members]
        if summariser is not None:
            content, by = summariser(texts), "custom"
        else:
            content, by = summarise(texts)
        with transaction.atomic():
            locked = list(
                Memory.objects.select_for_update().filter(
                    pk__in=[m.pk for m in members], active=True
                )
            )
            if len(locked) != len(members):
                continue  # changed under us; the next run will see it
            summary = Memory.objects.create(
                namespace=namespace,
                scope=scope,
                user_id=user_id,
                entity=entity,
                kind=MemoryKind.SUMMARY,
                content=content,
                importance=max(m.importance for m in members),
            )
            Memory.objects.filter(pk__in=[m.pk for m in members]).update(
                active=False, consolidated_into=summary
            )
            audit_event_record(
                namespace=namespace,
                actor=actor,
                action="memory_consolidate",
                target_type="memory",
                target_id=summary.pk,
                data={
                    "sources": [m.pk for m in members],
                    "kind": kind,
                    "summariser": by,
                },
            )
        created.append(summary)
    return created
