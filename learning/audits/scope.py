"""What a candidate is compared with: the curated items and pending candidates in its
scope that share its subject. On PostgreSQL the candidate set comes from the full-text
GIN indexes (learning/migrations/0003_search_indexes.py) and is ranked with pg_trgm
similarity, so an audit never reads the whole playbook; on SQLite the same filter runs
in Python."""

from dataclasses import dataclass, field
from functools import lru_cache
from itertools import combinations

from django.contrib.postgres.search import TrigramSimilarity
from django.db import connection
from django.db.models import BooleanField, FloatField, Q
from django.db.models.expressions import RawSQL

from learning.audits.cache import lexemes, word_stats
from learning.models import (
    MEMORY_KINDS,
    CandidateStatus,
    LearningCandidate,
)
from learning.text.analysis import index_words, query_terms, sentences, stem, words
from learning.text.contradiction import LessonText
from learning.text.similarity import QUOTED, trigram_similarity

# At most this many rows of each source reach the Python checks.
MAX_ROWS = 60
# Exactly the expressions of the full-text indexes, so the planner can use them.
STRATEGY_TSV = (
    "to_tsvector('english', playbooks_strategy.description || ' ' || "
    "playbooks_strategy.context)"
)
MEMORY_TSV = "to_tsvector('english', playbooks_memory.content)"
# A stored generated column (learning/migrations/0010_candidate_search_vector.py).
CANDIDATE_TSV = "learning_learningcandidate.search_vector"


@dataclass
class Item:
    """One thing a candidate may contradict or duplicate."""

    type: str  # strategy | memory | skill | candidate | policy
    id: object
    text: str
    label: str = ""
    obj: object = field(default=None, repr=False)
    # The item as a lesson (its shape when it has one): what the conflict and
    # duplicate rules read.
    lesson: LessonText | None = None

    def __post_init__(self):
        if self.lesson is None:
            self.lesson = LessonText(text=self.text)

    def related(self) -> dict:
        return {"type": self.type, "id": self.id, "text": self.text[:500]}


def candidate_text(candidate) -> str:
    """The text that would become curated: the content plus, for skill patches, the
    lines the patch adds."""
    text = candidate.content or ""
    if candidate.patch:
        added = [
            line[1:]
            for line in candidate.patch.splitlines()
            if line.startswith("+") and not line.startswith("+++")
        ]
        text = "\n".join([text, *added])
    return text


def candidate_lesson(candidate) -> LessonText:
    """The candidate as a lesson: the text that would become curated, with its shape
    (polarity, situation, directive) when it has one — never a polarity inferred from
    its kind."""
    return LessonText(
        text=candidate_text(candidate),
        polarity=candidate.polarity or "",
        when=candidate.when or "",
        directive=candidate.directive or "",
        kind=candidate.kind,
        entity=candidate.entity or "",
    )


def strategy_lesson(strategy) -> LessonText:
    return LessonText(
        text=strategy.description,
        polarity=strategy.polarity or "",
        when=strategy.when or "",
        directive=strategy.directive or "",
        kind="strategy",
    )


def _shared_needed(terms: list[str]) -> int:
    """How many of the candidate's specific words a row must share to be compared:
    the conflict rule wants 40% of the subject in common, so a long text needs three;
    a short one two (one when it has only one)."""
    if len(terms) <= 1:
        return len(terms)
    return 2 if len(terms) <= 5 else 3


def _terms_tsquery(terms: list[str]) -> str:
    """`(a & b & c) | (a & b & d) | …`: rows sharing `_shared_needed` of the words."""
    need = _shared_needed(terms)
    if not need:
        return ""
    return " | ".join(f"({' & '.join(group)})" for group in combinations(terms, need))


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def _indexed_filter(qs, *, field_name: str, tsv_sql: str, text: str, terms: list[str]):
    """Rows whose full-text vector (`tsv_sql`, exactly the GIN index expression)
    shares `_shared_needed` of the candidate's specific words, most trigram-similar
    first (pg_trgm), at most MAX_ROWS. Near-identical texts share nearly all their
    words, so duplicates are found by the same look-up."""
    tsquery = _terms_tsquery(terms)
    if not tsquery:
        return qs.none()
    return (
        qs.filter(
            RawSQL(
                f"{tsv_sql} @@ to_tsquery('english', %s)",
                [tsquery],
                output_field=BooleanField(),
            )
        )
        .annotate(_sim=TrigramSimilarity(field_name, text))
        .order_by("-_sim", "-pk")[:MAX_ROWS]
    )


def _python_filter(rows, *, text: str, terms: list[str], get_text) -> list:
    """The same rule as `_indexed_filter`, in Python (SQLite)."""
    need = _shared_needed(terms)
    if not need:
        return []
    wanted = {stem(t) for t in terms}
    scored = []
    for row in rows:
        other = get_text(row)
        shared = len(wanted & {stem(w) for w in index_words(other)})
        if shared >= need:
            scored.append((trigram_similarity(text, other), row.pk, row))
    scored.sort(key=lambda t: (t[0], t[1]), reverse=True)
    return [row for _, _, row in scored[:MAX_ROWS]]


# Words in more than this share of rows (PostgreSQL's most_common_elems statistics of
# the full-text index) say little about the subject and only make the look-up slow.
COMMON_WORD_SHARE = 0.05
# The rarest words a look-up uses: rows must share 3 of them, so a long text's query is
# at most C(8, 3) = 56 groups (20 words made 1,140, which the index evaluates per row).
MAX_LOOKUP_TERMS = 8


def _selective_terms(terms: list[str], *, stats_source: str) -> list[str]:
    """The candidate's words less those the index statistics show as common, rarest
    first, at most MAX_LOOKUP_TERMS; all of them when the table has no statistics yet
    (small tables). Statistics and lexemes come from this process's caches
    (learning/audits/cache.py)."""
    if not terms:
        return terms
    lexeme = lexemes(terms)
    stats = word_stats(stats_source)
    ranked = sorted(
        ((t, stats.get(lexeme[t]) or 0) for t in terms if lexeme[t]),
        key=lambda pair: pair[1],
    )
    selective = [t for t, freq in ranked if freq <= COMMON_WORD_SHARE]
    if len(selective) < min(2, len(ranked)):
        selective = [t for t, _ in ranked[:2]]
    return selective[:MAX_LOOKUP_TERMS] if stats else selective


MIN_TERMS_WITHOUT_QUOTES = 3


def _lookup_terms(text: str) -> list[str]:
    """The words to look rows up by: the most specific ones, leaving out quoted run
    content (an error message, a user's words) when enough words remain without it —
    two lessons that quote different errors are still about one thing."""
    unquoted = query_terms(QUOTED.sub(" ", text))
    if len(unquoted) >= MIN_TERMS_WITHOUT_QUOTES:
        return unquoted
    return query_terms(text)


def _similar_rows(
    *, qs, field_name: str, tsv_sql: str, stats_source: str, text: str, extra_text=None
):
    terms = _lookup_terms(text)
    if _postgres():
        terms = _selective_terms(terms, stats_source=stats_source)
        return list(
            _indexed_filter(
                qs, field_name=field_name, tsv_sql=tsv_sql, text=text, terms=terms
            )
        )
    get_text = extra_text or (lambda row: getattr(row, field_name))
    return _python_filter(qs.iterator(), text=text, terms=terms, get_text=get_text)


def _strategy_scope(candidate) -> tuple:
    if candidate.playbook_id:
        return ("playbook", candidate.playbook_id)
    return ("namespace", candidate.namespace_id)


def _strategy_lookup(candidate) -> dict:
    from playbooks.models import Playbook, Strategy

    scope = _strategy_scope(candidate)
    owner, owner_id = scope
    qs = Strategy.objects.filter(active=True)
    if owner == "playbook":
        qs = qs.filter(playbook_id=owner_id)
    else:
        qs = qs.filter(playbook__in=Playbook.objects.filter(namespace_id=owner_id))
    return dict(
        scope=scope,
        qs=qs.only(
            "id", "type", "description", "context", "polarity", "when", "directive"
        ),
        field_name="description",
        tsv_sql=STRATEGY_TSV,
        stats_source="strategy_desc_fts",
        extra_text=lambda row: f"{row.description} {row.context}",
    )


def _strategy_item(row) -> Item:
    return Item(
        type="strategy",
        id=row.pk,
        text=row.description,
        obj=row,
        label=f"strategy #{row.pk}",
        lesson=strategy_lesson(row),
    )


def _memory_scope(candidate) -> tuple:
    return (candidate.namespace_id, candidate.user_id or None)


def _memory_lookup(candidate) -> dict:
    from playbooks.models import Memory

    scope = _memory_scope(candidate)
    namespace_id, user_id = scope
    shared = Q(scope="namespace")
    if user_id:
        shared |= Q(scope="user", user_id=user_id)
    qs = Memory.objects.filter(shared, namespace_id=namespace_id, active=True)
    return dict(
        scope=scope,
        qs=qs.only("id", "kind", "content", "entity"),
        field_name="content",
        tsv_sql=MEMORY_TSV,
        stats_source="memory_content_fts",
    )


def _memory_item(row) -> Item:
    return Item(
        type="memory",
        id=row.pk,
        text=row.content,
        obj=row,
        label=f"{row.kind.replace('_', ' ')} memory #{row.pk}",
        lesson=LessonText(text=row.content, kind=row.kind, entity=row.entity),
    )


def curated_items_prefetch(candidates: list, sources=None) -> dict:
    """The curated strategies and memories and the other pending candidates
    `scope_items` would compare each of these candidates with, as one query per source
    and scope for the whole set (`_lookups_batched`: each candidate's own look-up, as
    `_indexed_filter` makes it): {candidate pk: {"strategy": [Item], "memory":
    [Item], "pending": [Item]}}. PostgreSQL only (empty on SQLite, where `scope_items`
    filters in Python). `sources`: only these of them."""
    if not _postgres() or not candidates:
        return {}
    names = list(sources or _LOOKUPS)
    out: dict = {c.pk: {name: [] for name in names} for c in candidates}
    texts = {c.pk: candidate_text(c) for c in candidates}
    terms_of = {pk: _lookup_terms(text) for pk, text in texts.items()}
    for name in names:
        scope_of, lookup, to_item = _LOOKUPS[name]
        by_scope: dict = {}
        for candidate in candidates:
            key = scope_of(candidate)
            entry = by_scope.get(key)
            if entry is None:
                entry = by_scope[key] = (lookup(candidate), [])
            terms = _selective_terms(
                terms_of[candidate.pk], stats_source=entry[0]["stats_source"]
            )
            tsquery = _terms_tsquery(terms)
            if tsquery:
                entry[1].append((candidate.pk, tsquery, texts[candidate.pk]))
        by_scope = {key: entry for key, entry in by_scope.items() if entry[1]}
        if not by_scope:
            continue
        found: dict = {}
        for row in _lookups_batched(list(by_scope.values())):
            found.setdefault(row._of, []).append(row)
        for pk, items in found.items():
            items.sort(key=lambda row: (row._sim, row.pk), reverse=True)
            out[pk][name] = [to_item(row) for row in items]
    return out


def _lookups_batched(scopes: list):
    """`_indexed_filter` of many texts of one source in one query. `scopes` holds
    (spec, lookups) per scope: each scope's query (`spec["qs"]`) is compiled once, its
    (candidate pk, tsquery, text) triples unnested and each one's rows found by a
    LATERAL subquery; the scopes are joined by UNION ALL. Rows carry `_of` (whose
    look-up found them) and `_sim`."""
    parts, params = [], []
    for spec, lookups in scopes:
        sql, scope_params = _lateral_sql(spec)
        # The tsquery is parsed once per look-up: OFFSET 0 keeps the planner from
        # pulling the subquery up and parsing it again for every row it tests.
        parts.append(
            "(SELECT lookup.of AS _of, found.* FROM (SELECT of, "
            "to_tsquery('english', tsquery) AS tsquery, text FROM unnest("
            "%s::integer[], %s::text[], %s::text[]) AS u(of, tsquery, text) OFFSET 0)"
            f" AS lookup CROSS JOIN LATERAL ({sql}) AS found)"
        )
        params += [*(list(column) for column in zip(*lookups)), *scope_params]
    return scopes[0][0]["qs"].model.objects.raw(" UNION ALL ".join(parts), params)


def _lateral_sql(spec: dict) -> tuple[str, tuple]:
    """A scope's `_indexed_filter` with the tsquery, the text and the candidate's own
    id read from the LATERAL row `lookup`."""
    qs, table = spec["qs"], spec["qs"].model._meta.db_table
    inner = qs.filter(
        RawSQL(
            f"{spec['tsv_sql']} @@ lookup.tsquery",
            [],
            output_field=BooleanField(),
        )
    )
    if spec.get("exclude_self"):
        inner = inner.filter(
            RawSQL(f'"{table}"."id" <> lookup.of', [], output_field=BooleanField())
        )
    inner = inner.annotate(
        _sim=RawSQL(
            f'SIMILARITY("{table}"."{spec["field_name"]}", lookup.text)',
            [],
            output_field=FloatField(),
        )
    ).order_by("-_sim", "-pk")[:MAX_ROWS]
    return inner.query.sql_with_params()


def skill_items(candidate) -> list[Item]:
    """The lines of the targeted skill, less those the patch removes."""
    skill = candidate.skill
    if skill is None:
        return []
    removed = {
        line[1:].strip()
        for line in (candidate.patch or "").splitlines()
        if line.startswith("-") and not line.startswith("---")
    }
    items = []
    for n, line in enumerate((skill.text or "").splitlines(), start=1):
        line = line.strip()
        if len(line) < 8 or line in removed:
            continue
        items.append(
            Item(
                type="skill",
                id=skill.pk,
                text=line,
                obj=skill,
                label=f"skill {skill.slug}, line {n}",
            )
        )
    return items


def _pending_scope(candidate) -> tuple:
    memory_kind = candidate.kind in MEMORY_KINDS
    return (
        candidate.namespace_id,
        candidate.playbook_id,
        candidate.skill_id,
        memory_kind,
        candidate.user_id if memory_kind else None,
    )


def _pending_lookup(candidate) -> dict:
    """Other pending candidates with the same target (`exclude_self`: the candidate
    itself is left out where the look-up runs)."""
    scope = _pending_scope(candidate)
    namespace_id, playbook_id, skill_id, memory_kind, user_id = scope
    qs = LearningCandidate.objects.filter(
        namespace_id=namespace_id,
        status=CandidateStatus.PENDING,
        playbook_id=playbook_id,
        skill_id=skill_id,
    )
    if memory_kind:
        qs = qs.filter(user_id=user_id)
    return dict(
        scope=scope,
        exclude_self=True,
        qs=qs.only(
            "id",
            "kind",
            "content",
            "patch",
            "playbook_id",
            "skill_id",
            "user_id",
            "created_at",
            "evidence_count",
            "namespace_id",
            "status",
            "polarity",
            "when",
            "directive",
            "entity",
        ),
        field_name="content",
        tsv_sql=CANDIDATE_TSV,
        stats_source="learning_learningcandidate.search_vector",
    )


def _pending_item(row) -> Item:
    return Item(
        type="candidate",
        id=row.pk,
        text=row.content,
        obj=row,
        label=f"pending candidate #{row.pk}",
        lesson=candidate_lesson(row),
    )


# The sources `curated_items_prefetch` reads for a set: (candidate -> its scope's
# key, look-up, row -> Item). The key is cheap; the look-up (a queryset) is built once
# per scope of a set.
_LOOKUPS = {
    "strategy": (_strategy_scope, _strategy_lookup, _strategy_item),
    "memory": (_memory_scope, _memory_lookup, _memory_item),
    "pending": (_pending_scope, _pending_lookup, _pending_item),
}


def source_items(source: str, candidate, text: str) -> list[Item]:
    """The rows of one source of `_LOOKUPS` ("strategy", "memory", "pending") that
    share the candidate's subject, as `curated_items_prefetch` finds them for a set."""
    _, lookup, to_item = _LOOKUPS[source]
    spec = lookup(candidate)
    spec.pop("scope")
    if spec.pop("exclude_self", False):
        spec["qs"] = spec["qs"].exclude(pk=candidate.pk)
    return [to_item(row) for row in _similar_rows(**spec, text=text)]


def pending_candidate_items(candidate, text: str) -> list[Item]:
    """Other pending candidates with the same target that share its subject."""
    return source_items("pending", candidate, text)


# A policy sentence needs this many words to say something a lesson can contradict
# (headings such as "## Cancel flight" do not).
POLICY_MIN_WORDS = 4
POLICY_EXEMPT_KINDS = frozenset({"durable_fact"})  # facts state, they do not advise


@lru_cache(maxsize=64)
def policy_sentences(text: str) -> tuple[str, ...]:
    """The statements of a policy document, one per sentence or list item."""
    out = []
    for line in (text or "").splitlines():
        line = line.strip().lstrip("#*->0123456789. ").strip()
        if not line:
            continue
        out.extend(
            s for s in sentences(line) if len(words(s.lower())) >= POLICY_MIN_WORDS
        )
    return tuple(out)


def policy_items(candidate, agent_policies=None) -> list[Item]:
    """The sentences of the agent's policy for the candidate's namespace and playbook
    (one query, or none given the namespace's AgentPolicy rows in id order, as
    `learning.audits.cache.namespace_policies` keeps them; a policy has tens of
    sentences, whatever the size of the playbook)."""
    from playbooks.models import AgentPolicy

    if candidate.kind in POLICY_EXEMPT_KINDS:
        return []
    if agent_policies is None:
        where = Q(playbook__isnull=True)
        if candidate.playbook_id:
            where |= Q(playbook_id=candidate.playbook_id)
        policies = AgentPolicy.objects.filter(
            where, namespace_id=candidate.namespace_id
        )
    else:
        policies = [
            p
            for p in agent_policies
            if p.playbook_id is None
            or (candidate.playbook_id and p.playbook_id == candidate.playbook_id)
        ]
    items = []
    for policy in policies:
        label = "the agent's policy"
        for sentence in policy_sentences(policy.text):
            items.append(
                Item(
                    type="policy", id=policy.pk, text=sentence, label=label, obj=policy
                )
            )
    return items


def scope_items(candidate, curated: dict | None = None) -> list[Item]:
    """Everything in the candidate's scope that shares its subject; `curated` is the
    candidate's entry of `curated_items_prefetch` (its strategies, memories and the
    pending candidates looked up with the rest of its set; a source missing from it
    is looked up now)."""
    text = candidate_text(candidate)
    curated = curated or {}

    def found(source: str) -> list[Item]:
        items = curated.get(source)
        return source_items(source, candidate, text) if items is None else items

    return [
        *found("strategy"),
        *found("memory"),
        *skill_items(candidate),
        *found("pending"),
    ]
