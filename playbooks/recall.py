"""Recall: the playbook's lessons about a task, inside a token budget.

Candidates are found by the task's words: on PostgreSQL with full-text search over a
stored `to_tsvector('english', description || ' ' || context)` column and its GIN index
(migration 0003; terms OR-ed), plus the trigram index on `description` when a short task
finds (almost) nothing (near-spellings); elsewhere (SQLite) by term overlap in Python.
Then each is judged by situation (`_about_the_task`): relevance is the share of the
lesson's situation (`when`) the task shows and the share of its subject (the tools,
fields and objects its directive names) the task names; a lesson below MIN_RELEVANCE
is about another situation and is left out — it never fills the context — except at
most GENERAL_MAX lessons that hold in any situation (no `when`). The kept ones score

    score = 0.55 * relevance + 0.20 * confidence + 0.15 * usefulness + 0.10 * recency

usefulness: (helpful + 1) / (helpful + harmful + 2); recency: exp(-days since the
strategy last changed / 90).

Every line is rendered from the lesson's structure (`learning.lessons.lesson_render`):
"Check … before calling X." for a `do`, "Do not …" / "Avoid …" for an `avoid` — the
meaning the reviewer approved. Tokens are estimated as ceil(characters / 4); the
context text, header included, never exceeds `budget_tokens` by that estimate.

Which version: production, unless a rollout runs (`playbooks.quality`), when the
recall's cohort decides — the canary is the live strategies, production is served
through the rollout's overlay; `version=n` pins a version (cohort "pinned"). A version
other than the live one is ranked by the same query over the live rows it shares with
the live version, plus its own snapshot items where they differ (an *overlay*: the
same lesson fields, their full-text vector computed on the fly with the stored
column's formula — migration 0006), so both cohorts of an experiment are ranked by
exactly the same rule.
"""

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from learning.lessons import lesson_render, run_specific_terms
from learning.limits import MAX_SITUATION_TEXT, MAX_SITUATIONS
from learning.services.redaction import redact_fields
from learning.text.analysis import STOPWORDS, index_words, stem
from playbooks.models import (
    Playbook,
    PlaybookVersion,
    RecallLog,
    Strategy,
    StrategyType,
)
from playbooks.quality import (
    CANARY,
    PINNED,
    PRODUCTION,
    content_overlay,
    rollout_cohort,
    rollout_running,
    rollout_unit,
)

MAX_CANDIDATES = 100  # relevant strategies scored per recall
FILL_CANDIDATES = 20  # best general strategies considered when few match
TRIGRAM_BELOW = 3  # a short task with fewer full-text matches also tries trigrams
DEFAULT_BUDGET = 800
# last_recalled_at is restamped at most this often: curation's decay counts in days
# (DECAY_DAYS), and a lesson recalled again and again is not rewritten every time.
STAMP_EVERY = timedelta(hours=1)
MAX_BUDGET = 32000
_WORD = re.compile(r"[a-z0-9]+")


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4) if text else 0


def task_terms(task: str, *, limit: int = 32) -> list[str]:
    terms = []
    for word in _WORD.findall((task or "").lower()):
        if len(word) < 3 or word in STOPWORDS or word in terms:
            continue
        terms.append(word)
    return terms[:limit]


@dataclass
class Scored:
    id: int
    key: str
    type: str
    description: str
    context: str
    confidence: float
    helpful_count: int
    harmful_count: int
    updated_at: datetime | float  # a datetime, or epoch seconds from raw SQL
    polarity: str = ""
    when: str = ""
    directive: str = ""
    situations: str = ""
    relevance: float = 0.0
    near_spelling: float = 0.0  # trigram word similarity, for misspelled tasks
    score: float = 0.0


_FIELDS = (
    "id",
    "key",
    "type",
    "description",
    "context",
    "confidence",
    "helpful_count",
    "harmful_count",
    "updated_at",
    "polarity",
    "when",
    "directive",
    "situations",
)
_N = len(_FIELDS)
# The text fields of a snapshot item (versions made before the lesson shape lack some).
_ITEM_TEXT = ("description", "context", "polarity", "when", "directive", "situations")


@dataclass
class Overlay:
    """How a served version differs from the live strategies: live keys to leave out,
    and its own snapshot items to rank instead (`updated`: epoch seconds standing for
    their last change, the version's creation). Items carry the lesson fields of a
    snapshot (`playbooks.versions.SNAPSHOT_FIELDS`); missing ones read as empty."""

    exclude: list[str]
    items: list[dict]
    updated: float

    @classmethod
    def of(cls, data: dict | None) -> "Overlay | None":
        if not data:
            return None
        return cls(
            exclude=list(data.get("exclude") or []),
            items=[
                {**item, **{f: item.get(f) or "" for f in _ITEM_TEXT}}
                for item in data.get("items") or []
            ],
            updated=float(data.get("updated") or 0.0),
        )

    def scored(self, item: dict) -> Scored:
        return Scored(
            item.get("id") or 0,
            item["key"],
            item.get("type") or StrategyType.HELPFUL,
            item["description"],
            item["context"],
            float(item.get("confidence") or 0.0),
            int(item.get("helpful_count") or 0),
            int(item.get("harmful_count") or 0),
            self.updated,
            item["polarity"],
            item["when"],
            item["directive"],
            item["situations"],
        )


# updated_at as epoch seconds: parsing ~120 timestamps per recall cost milliseconds
_COLUMNS = (
    "s.id AS id, s.key AS key, s.type AS type, s.description AS description, "
    "s.context AS context, s.confidence AS confidence, "
    "s.helpful_count AS helpful_count, s.harmful_count AS harmful_count, "
    "extract(epoch FROM s.updated_at)::float8 AS updated, s.polarity AS polarity, "
    "s.lesson_when AS lesson_when, s.directive AS directive, s.situations AS situations"
)
_NAMES = (
    "id, key, type, description, context, confidence, helpful_count, harmful_count, "
    "updated, polarity, lesson_when, directive, situations"
)
# An overlay's items as rows, and their full-text vector: the stored column's formula
# (migration 0006: description, context, when and the learned situations).
_ITEMS = (
    "jsonb_to_recordset(%(items)s::jsonb) AS e(id int, key uuid, type text, "
    "description text, context text, confidence float8, helpful_count int, "
    'harmful_count int, position int, polarity text, "when" text, directive text, '
    "situations text)"
)
_ITEM_COLUMNS = (
    "e.id, e.key, e.type, e.description, e.context, e.confidence, e.helpful_count, "
    'e.harmful_count, %(updated)s::float8, e.polarity, e."when", e.directive, '
    "e.situations"
)
_ITEM_VECTOR = (
    "to_tsvector('english', e.description || ' ' || e.context || ' ' || "
    "e.\"when\" || ' ' || e.situations)"
)
_LIVE = "s.playbook_id = %(playbook)s AND s.active"
_EXCLUDE = " AND NOT (s.key = ANY(%(exclude)s::uuid[]))"
_QUERY = "to_tsquery('english', %(query)s) AS q(query)"


def _matched_sql(overlay: Overlay | None) -> str:
    live = f"""(SELECT {_COLUMNS}, ts_rank(s.search_vector, q.query) AS fts, 1 AS matched
         FROM playbooks_strategy s, {_QUERY}
         WHERE {_LIVE}{_EXCLUDE if overlay else ""} AND s.search_vector @@ q.query
         ORDER BY fts DESC, s.confidence DESC
         LIMIT %(limit)s)"""
    if not (overlay and overlay.items):
        return live
    # the best of (live rows it shares) + (its own items) = its own best
    return f"""(SELECT {_NAMES}, fts, matched FROM ({live}
         UNION ALL
         (SELECT {_ITEM_COLUMNS}, ts_rank({_ITEM_VECTOR}, q.query), 1
          FROM {_ITEMS}, {_QUERY} WHERE {_ITEM_VECTOR} @@ q.query)) m
         ORDER BY fts DESC, confidence DESC LIMIT %(limit)s)"""


def _fill_sql(overlay: Overlay | None) -> str:
    order = "ORDER BY s.confidence DESC, s.helpful_count DESC, s.position"
    if not (overlay and overlay.items):
        return f"""(SELECT {_COLUMNS}, 0, 0 FROM playbooks_strategy s
         WHERE {_LIVE}{_EXCLUDE if overlay else ""} {order} LIMIT %(fill)s)"""
    return f"""(SELECT {_NAMES}, 0, 0 FROM (
         (SELECT {_COLUMNS}, s.position AS pos FROM playbooks_strategy s
          WHERE {_LIVE}{_EXCLUDE} {order} LIMIT %(fill)s)
         UNION ALL (SELECT {_ITEM_COLUMNS}, e.position FROM {_ITEMS})) f
         ORDER BY confidence DESC, helpful_count DESC, pos LIMIT %(fill)s)"""


def _trigram_sql(overlay: Overlay | None) -> str:
    live = f"""(SELECT {_COLUMNS}, word_similarity(%(task)s, s.description) AS sim
         FROM playbooks_strategy s
         WHERE {_LIVE}{_EXCLUDE if overlay else ""} AND %(task)s <%% s.description
         ORDER BY sim DESC LIMIT %(fill)s)"""
    if not (overlay and overlay.items):
        return live
    return f"""SELECT {_NAMES}, sim FROM ({live}
         UNION ALL
         (SELECT {_ITEM_COLUMNS}, word_similarity(%(task)s, e.description)
          FROM {_ITEMS} WHERE %(task)s <%% e.description)) t
         ORDER BY sim DESC LIMIT %(fill)s"""


def _postgres_candidates(
    playbook: Playbook, task: str, terms: list[str], overlay: Overlay | None = None
) -> list[Scored]:
    """Full-text matches ranked by the database plus the best general strategies (the
    fill), in one round trip; a strategy in both keeps its match. When a short task
    matches (almost) nothing, trigram word similarity looks for near-spellings. With
    an overlay, the same over the version it describes."""
    matched = f"{_matched_sql(overlay)}\n        UNION ALL\n" if terms else ""
    sql = f"{matched}{_fill_sql(overlay)}"
    params = {
        "query": " | ".join(terms),
        "playbook": playbook.pk,
        "task": task,
        "limit": MAX_CANDIDATES,
        "fill": FILL_CANDIDATES,
    }
    if overlay is not None:
        params.update(
            exclude=overlay.exclude,
            items=json.dumps(overlay.items),
            updated=overlay.updated,
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = [
            (row[:_N], float(row[_N]), "fts" if row[_N + 1] else "fill")
            for row in cursor.fetchall()
        ]
        fts_count = sum(kind == "fts" for _, _, kind in rows)
        if terms and fts_count < TRIGRAM_BELOW and len(task) <= 40:
            cursor.execute(_trigram_sql(overlay), params)
            rows += [(row[:_N], float(row[_N]), "trgm") for row in cursor.fetchall()]
    best = max((rank for _, rank, kind in rows if kind == "fts"), default=0) or 1.0
    priority = {"fts": 0, "trgm": 1, "fill": 2}
    out, seen = [], set()
    for fields, rank, kind in sorted(rows, key=lambda r: priority[r[2]]):
        if fields[0] in seen:
            continue
        seen.add(fields[0])
        item = Scored(*fields)
        item.key = str(item.key)
        if kind == "fts":
            item.relevance = min(1.0, rank / best)
        elif kind == "trgm":  # near-spellings rank below real matches
            item.near_spelling = 0.6 * rank
        out.append(item)
    return out


def _live_rows(playbook: Playbook, overlay: Overlay | None, *fields: str):
    qs = Strategy.objects.filter(playbook=playbook, active=True)
    if overlay is not None and overlay.exclude:
        qs = qs.exclude(key__in=overlay.exclude)
    return qs.values_list(*_FIELDS, *fields)


def _python_candidates(
    playbook: Playbook, terms: list[str], overlay: Overlay | None = None
) -> list[Scored]:
    wanted = {stem(t) for t in terms}
    if not wanted:
        return []
    pool = [Scored(*row) for row in _live_rows(playbook, overlay)]
    if overlay is not None:
        pool += [overlay.scored(item) for item in overlay.items]
    out = []
    for item in pool:
        text = f"{item.description} {item.context} {item.when} {item.situations}"
        words = {stem(w) for w in _WORD.findall(text.lower())}
        overlap = len(wanted & words)
        if overlap:
            item.relevance = overlap / len(wanted)
            out.append(item)
    out.sort(key=lambda s: -s.relevance)
    best = out[0].relevance if out else 1.0
    for item in out:
        item.relevance = item.relevance / best
    return out[:MAX_CANDIDATES]


def _fill_candidates(
    playbook: Playbook, exclude: set[int], overlay: Overlay | None = None
) -> list[Scored]:
    rows = [
        (Scored(*row[:-1]), row[-1])
        for row in _live_rows(playbook, overlay, "position")
        .exclude(pk__in=exclude)
        .order_by("-confidence", "-helpful_count", "position")[:FILL_CANDIDATES]
    ]
    if overlay is not None:
        rows += [
            (overlay.scored(item), item.get("position") or 0)
            for item in overlay.items
            if item.get("id") not in exclude
        ]
    rows.sort(key=lambda r: (-r[0].confidence, -r[0].helpful_count, r[1]))
    return [item for item, _ in rows[:FILL_CANDIDATES]]


# Words every situation shares ("the user asks …"): they tell nothing about which.
_GENERIC = frozenset(
    stem(w)
    for w in "user users customer agent ask asks asked want wants need needs request "
    "requests task tool tools call calls called use using run runs step".split()
)
MIN_RELEVANCE = 0.34  # below this a lesson is not about the task
SHORT_TASK = 8  # words: a task this short is judged by how much of it a lesson covers
# Weighted word overlap with a task a lesson was learned from that counts as the same
# situation (the same instruction scores 1.0; another task of the same kind ~0.3-0.5).
LEARNED_FULL = 0.6
GENERAL_MAX = 3  # lessons for any situation (no `when`) half as relevant, at most


@lru_cache(maxsize=16384)
def _stems(text: str) -> frozenset[str]:
    """Content stems as text search sees them (identifiers split at underscores).
    Cached: a recall reads each lesson's texts twice (rarity, relevance) and the same
    lessons come back recall after recall (the fill, the common matches)."""
    return (
        frozenset(
            stem(w) for w in index_words(text) if w not in STOPWORDS and len(w) > 2
        )
        - _GENERIC
    )


def _weighted_share(part: frozenset, whole: frozenset, weight) -> float:
    total = sum(weight(w) for w in whole)
    return sum(weight(w) for w in part & whole) / total if total else 0.0


def _relevance(item: Scored, task: frozenset[str], weight) -> float:
    """How much the lesson is about this task, the best of:
    - its structure: the share of its situation (`when`) the task shows and the share
      of its subject (tools, fields, objects) the task names (a lesson without a
      situation is judged on its subject alone; a short task also by how much of it
      the lesson covers);
    - its learned situations: how alike the task is to the tasks it was learned from.
    Each word is weighted by how rare it is among the lessons compared, so the words
    every lesson of a playbook uses ("reservation") decide nothing."""
    subject = _stems(item.directive or item.description)
    coverage = _weighted_share(task, subject, weight)
    if len(task) <= SHORT_TASK:
        coverage = max(coverage, _weighted_share(subject, task, weight))
    situation = _stems(item.when) if item.when else frozenset()
    structure = coverage
    if situation:
        shown = _weighted_share(task, situation, weight)
        structure = max(0.6 * shown + 0.4 * coverage, 0.5 * coverage)
    return max(structure, _learned_situation(item, task, weight))


def _learned_situation(item: Scored, task: frozenset[str], weight) -> float:
    """Weighted Jaccard between the task and the closest task the lesson was learned
    from (ids, amounts and dates left out: the same kind of task, not the same run)."""
    best = 0.0
    for example in _situation_stems(item.situations):
        union = task | example
        total = sum(weight(w) for w in union)
        if total:
            best = max(best, sum(weight(w) for w in task & example) / total)
    return min(1.0, best / LEARNED_FULL)


@lru_cache(maxsize=4096)
def _situation_stems(situations: str) -> tuple[frozenset[str], ...]:
    return tuple(
        _stems(_without_instances(line)) for line in situations.split("\n") if line
    )


def _without_instances(text: str) -> str:
    for term in run_specific_terms(text):
        text = text.replace(term, " ")
    return text


def _rarity(found: list[Scored]):
    """Inverse document frequency of each word over the lessons compared (a lesson's
    text, situation and learned situations are one document)."""
    counts: Counter = Counter()
    for item in found:
        words = _stems(f"{item.when} {item.directive or item.description}")
        for example in _situation_stems(item.situations):
            words = words | example
        counts.update(words)
    n = len(found)
    weights = {
        word: math.log((n + 1) / (count + 0.5)) for word, count in counts.items()
    }
    unseen = math.log((n + 1) / 0.5)
    return lambda word: weights.get(word, unseen)  # computed once per word


def _score(item: Scored, now: datetime) -> float:
    usefulness = (item.helpful_count + 1) / (
        item.helpful_count + item.harmful_count + 2
    )
    changed = item.updated_at
    seconds = now.timestamp() - (
        changed if isinstance(changed, float) else changed.timestamp()
    )
    age_days = max(seconds / 86400, 0.0)
    recency = math.exp(-age_days / 90)
    return round(
        0.55 * item.relevance
        + 0.20 * item.confidence
        + 0.15 * usefulness
        + 0.10 * recency,
        4,
    )


def strategy_line(item) -> str:
    """One context line, rendered from the lesson's structure (`learning.lessons`):
    the meaning the reviewer approved, never re-read from its first word."""
    if item.directive:
        text = lesson_render(
            polarity=item.polarity, when=item.when, directive=item.directive
        )
    else:  # a row without the shape: its text as written
        text = " ".join(item.description.split())
    return f"- {text}"


def _about_the_task(found: list[Scored], *, task: str) -> list[Scored]:
    """The lessons about this task: those whose situation and subject the task shows
    (relevance at least MIN_RELEVANCE), plus at most GENERAL_MAX lessons that hold in
    any situation. A lesson about another situation never fills the context."""
    words = _stems(task)
    weight = _rarity(found)
    kept, general = [], 0
    for item in found:
        item.relevance = max(_relevance(item, words, weight), item.near_spelling)
        if item.relevance >= MIN_RELEVANCE:
            kept.append(item)
        elif (
            not item.when
            and general < GENERAL_MAX
            and item.relevance >= MIN_RELEVANCE / 2
        ):
            general += 1
            kept.append(item)
    return kept


def _header(playbook: Playbook, version: int) -> str:
    return f'Lessons from playbook "{playbook.slug}" (version {version}):\n'


@dataclass
class RecallResult:
    playbook: str
    version: int
    context: str
    items: list[dict]
    tokens: int
    memories: list[dict] | None = None  # only when asked for a user's memories
    cohort: str = PRODUCTION  # production | canary | pinned

    def as_dict(self) -> dict:
        data = {
            "playbook": self.playbook,
            "version": self.version,
            "cohort": self.cohort,
            "context": self.context,
            "items": self.items,
            "tokens": self.tokens,
        }
        if self.memories is not None:
            data["memories"] = self.memories
        return data


MEMORY_SHARE = 0.25  # of the budget, at most, for the user's memories
MAX_MEMORIES = 10
_MEMORY_HEADER = "What we know about this user and the task's entities:\n"


def _memories_for(playbook: Playbook, user_id: str, task: str) -> list[tuple]:
    """The user's memories and namespace facts about an entity the task names, most
    important first (one query)."""
    from django.db.models import Q

    from playbooks.models import Memory

    words = set(re.findall(r"[\w-]+", task))
    wanted = Q(user_id=user_id) if user_id else Q(pk__in=[])
    if words:
        wanted |= Q(user_id="") & ~Q(entity="") & Q(entity__in=words)
    return list(
        Memory.objects.filter(namespace_id=playbook.namespace_id, active=True)
        .filter(wanted)
        .order_by("-importance", "-created_at", "-id")
        .values_list("id", "kind", "content", "entity")[:MAX_MEMORIES]
    )


def _memory_lines(rows: list[tuple], budget_tokens: int) -> tuple[str, list[dict]]:
    limit = math.floor(budget_tokens * MEMORY_SHARE)
    text, used = "", len(_MEMORY_HEADER)
    kept = []
    for pk, kind, content, entity in rows:
        about = f"{entity}: " if entity else ""
        line = f"- {about}{' '.join(content.split())}\n"
        if math.ceil((used + len(line)) / 4) > limit:
            continue
        text += line
        used += len(line)
        kept.append({"id": pk, "kind": kind, "entity": entity, "content": content})
    return (_MEMORY_HEADER + text if kept else ""), kept


class UnknownVersion(LookupError):
    """A pinned version the playbook does not have."""


@dataclass
class Serving:
    """Which version a recall serves, to which cohort, and how it differs from the
    live strategies (None: it is the live version)."""

    version: int
    cohort: str
    overlay: Overlay | None = None


def recall_serving(*, playbook: Playbook, unit: str, pin: int | None = None) -> Serving:
    """Production; or, while a rollout runs, the unit's cohort's version; or the
    pinned version. No query without a rollout or a pin; one with a rollout."""
    if pin is not None:
        return _pinned(playbook, pin, PINNED)
    if playbook.canary_version is None:
        return Serving(playbook.production_version, PRODUCTION)
    rollout = rollout_running(playbook=playbook)
    if rollout is None or rollout.canary != playbook.current_version:
        # labels out of step with the rollouts (never left so by the services)
        return _pinned(playbook, playbook.production_version, PRODUCTION)
    if rollout_cohort(salt=rollout.salt, share=rollout.share, unit=unit) == CANARY:
        return Serving(playbook.current_version, CANARY)
    return Serving(playbook.production_version, PRODUCTION, Overlay.of(rollout.overlay))


def _pinned(playbook: Playbook, number: int, cohort: str) -> Serving:
    if number == playbook.current_version:
        return Serving(number, cohort)
    rows = {
        n: (content, created)
        for n, content, created in PlaybookVersion.objects.filter(
            playbook=playbook, number__in=[number, playbook.current_version]
        ).values_list("number", "content", "created_at")
    }
    if number not in rows:
        raise UnknownVersion(f"Playbook {playbook.slug} has no version {number}.")
    live = rows.get(playbook.current_version, ([], None))[0]
    content, created = rows[number]
    overlay = content_overlay(live=live, target=content, updated=created.timestamp())
    return Serving(number, cohort, Overlay.of(overlay))


def _ranked(
    playbook: Playbook,
    task: str,
    task_type: str,
    overlay: Overlay | None,
    extra: list[Scored],
    exclude: frozenset[int],
) -> list[Scored]:
    """The served version's lessons about the task, best first (with `extra`, less
    `exclude`)."""
    terms = task_terms(f"{task} {task_type.replace('.', ' ').replace('_', ' ')}")
    if connection.vendor == "postgresql":
        found = _postgres_candidates(playbook, task, terms, overlay)
    else:
        found = _python_candidates(playbook, terms, overlay)
        found += _fill_candidates(playbook, {s.id for s in found}, overlay)
    found = [item for item in found if item.id not in exclude] + list(extra)
    found = _about_the_task(found, task=f"{task} {task_type}")
    now = timezone.now()
    for item in found:
        item.score = _score(item, now)
    found.sort(key=lambda s: (-s.score, s.id))
    return found


def _fitted(found: list[Scored], used: int, budget_tokens: int):
    """The lines and items that fit the budget, best first (a shorter one further
    down may still fit where a longer one did not)."""
    lines: list[str] = []
    items: list[dict] = []
    for item in found:
        line = strategy_line(item) + "\n"
        if math.ceil((used + len(line)) / 4) > budget_tokens:
            continue
        lines.append(line)
        used += len(line)
        items.append(
            {
                "id": item.id,
                "key": str(item.key),
                "type": item.type,
                "polarity": item.polarity,
                "when": item.when,
                "directive": item.directive,
                "description": item.description,
                "score": item.score,
            }
        )
    return lines, items


def playbook_recall(
    *,
    playbook: Playbook,
    task: str,
    task_type: str = "",
    budget_tokens: int = DEFAULT_BUDGET,
    requested_by: str = "",
    session_id: str = "",
    run_external_id: str = "",
    user_id: str | None = None,
    version: int | None = None,
    log: bool = True,
    extra: list[Scored] | None = None,
    exclude: frozenset[int] = frozenset(),
) -> RecallResult:
    """Rank, fit into the budget, log the recall (RecallLog) and return it. The
    version is production's, the cohort's while a rollout runs (by session_id, else
    user_id, else the run), or `version` when pinned (UnknownVersion if there is none).
    With `user_id`, up to a quarter of the budget carries that user's memories (and
    namespace facts about entities the task names). `extra`: lessons not (yet) in the
    playbook, ranked with the rest (the console's "with this candidate applied")."""
    serving = recall_serving(
        playbook=playbook,
        unit=rollout_unit(
            session_id=session_id, user_id=user_id or "", run=run_external_id
        ),
        pin=version,
    )
    found = _ranked(
        playbook, task, task_type, serving.overlay, list(extra or []), exclude
    )
    memory_text, memories = "", None
    if user_id is not None:
        memory_text, memories = _memory_lines(
            _memories_for(playbook, user_id, task), budget_tokens
        )
    header = _header(playbook, serving.version)
    lines, items = _fitted(found, len(header) + len(memory_text), budget_tokens)
    context = header + "".join(lines) + memory_text if lines or memory_text else ""
    if math.ceil(len(context) / 4) > budget_tokens:  # header + memories alone too big
        context, memories = "", ([] if memories is not None else None)
    result = RecallResult(
        playbook=playbook.slug,
        version=serving.version,
        cohort=serving.cohort,
        context=context,
        items=items,
        tokens=estimate_tokens(context),
        memories=memories,
    )
    if log:
        _recall_log(
            playbook=playbook,
            version=serving.version,
            cohort=serving.cohort,
            task=task,
            task_type=task_type,
            items=items,
            tokens=result.tokens,
            requested_by=requested_by,
            session_id=session_id,
            run_external_id=run_external_id,
            now=timezone.now(),
            postgres=connection.vendor == "postgresql",
        )
    return result


_LOG_LENGTHS = {
    "task": 2000,
    "task_type": 200,
    "requested_by": 150,
    "session_id": 200,
    "run_external_id": 200,
}


def _recall_log(
    *,
    playbook,
    version,
    cohort,
    task,
    task_type,
    items,
    tokens,
    requested_by,
    session_id,
    run_external_id,
    now,
    postgres: bool,
) -> None:
    """The RecallLog row and the strategies' last_recalled_at (where older than
    STAMP_EVERY): on PostgreSQL one statement (a data-modifying CTE), so recall stays
    at a fixed few round trips."""
    keys = [i["key"] for i in items]
    stale = now - STAMP_EVERY  # a stamp older than this is renewed
    text = {
        "task": task,
        "task_type": task_type,
        "requested_by": requested_by,
        "session_id": session_id,
        "run_external_id": run_external_id,
    }
    # What the caller sent is kept for the quality gate, without its secrets.
    redact_fields(text, text, max_lengths=_LOG_LENGTHS)
    values = {
        "namespace_id": playbook.namespace_id,
        "playbook_id": playbook.pk,
        "version": version,
        "cohort": cohort,
        "strategy_keys": keys,
        "tokens": tokens,
        **text,
    }
    if not postgres:
        with transaction.atomic():
            RecallLog.objects.create(**values)
            if items:
                Strategy.objects.filter(
                    Q(last_recalled_at__isnull=True) | Q(last_recalled_at__lt=stale),
                    pk__in=[i["id"] for i in items],
                ).update(last_recalled_at=now)
        return
    values["strategy_keys"] = json.dumps(keys)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH log AS (
                INSERT INTO playbooks_recalllog (namespace_id, playbook_id, version,
                    cohort, task, task_type, strategy_keys, tokens, requested_by,
                    session_id, run_external_id, created_at)
                VALUES (%(namespace_id)s, %(playbook_id)s, %(version)s, %(cohort)s,
                    %(task)s, %(task_type)s, %(strategy_keys)s::jsonb, %(tokens)s, %(requested_by)s,
                    %(session_id)s, %(run_external_id)s, %(now)s)
                RETURNING id
            )
            UPDATE playbooks_strategy SET last_recalled_at = %(now)s
            WHERE id = ANY(%(ids)s) AND EXISTS (SELECT 1 FROM log)
                AND (last_recalled_at IS NULL OR last_recalled_at < %(stale)s)
            """,
            {
                **values,
                "now": now,
                "stale": stale,
                "ids": [i["id"] for i in items],
            },
        )


def lesson_situations(candidate, known: str = "", *, run_tasks=None) -> str:
    """The tasks of a candidate's evidence runs after the ones already known — a few,
    distinct, clipped, one per line: the situations its lesson was learned in.
    `run_tasks`: those tasks, oldest first, when the caller has read them already."""
    tasks = [t for t in known.split("\n") if t]
    if run_tasks is None and candidate.pk is not None:
        run_tasks = candidate.evidence_runs.order_by("created_at").values_list(
            "task_description", flat=True
        )[: MAX_SITUATIONS * 3]
    for text in list(run_tasks or ())[: MAX_SITUATIONS * 3]:
        text = " ".join((text or "").split())[:MAX_SITUATION_TEXT]
        if text and text not in tasks and len(tasks) < MAX_SITUATIONS:
            tasks.append(text)
    return "\n".join(tasks)


def recall_preview(
    *,
    playbook: Playbook,
    task: str,
    task_type: str = "",
    budget_tokens: int = DEFAULT_BUDGET,
    candidate=None,
) -> RecallResult:
    """The exact context an agent would get for `task` now from the live version — and,
    with `candidate`, as if that candidate were applied (a new lesson beside the
    others; a replacement takes its old strategy's place). While a rollout runs the
    live version is the canary, which an applied candidate would fold into. Nothing is
    logged."""
    extra = []
    if candidate is not None and candidate.directive:
        extra.append(
            Scored(
                id=None,
                key=f"candidate-{candidate.pk}",
                type="harmful" if candidate.kind == "strategy_harmful" else "helpful",
                description=candidate.content,
                context="",
                confidence=candidate.confidence,
                helpful_count=max(candidate.evidence_count, 1),
                harmful_count=0,
                updated_at=timezone.now(),
                polarity=candidate.polarity,
                when=candidate.when,
                directive=candidate.directive,
                situations=lesson_situations(candidate),
            )
        )
    replaced = getattr(candidate, "replaces_strategy_id", None)
    return playbook_recall(
        playbook=playbook,
        task=task,
        task_type=task_type,
        budget_tokens=budget_tokens,
        version=playbook.current_version,
        log=False,
        extra=extra,
        exclude=frozenset({replaced}) if replaced else frozenset(),
    )
