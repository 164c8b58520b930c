"""What a candidate is compared with: the curated items and pending candidates in its
scope that share its subject. On PostgreSQL the candidate set comes from the trigram
and full-text GIN indexes (learning/migrations/0003_search_indexes.py), so an audit
never reads the whole playbook; on SQLite the same filter runs in Python."""
from dataclasses import dataclass, field
from itertools import combinations

from django.contrib.postgres.search import TrigramSimilarity
from django.db import connection
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL

from learning.audits.text import query_terms, trigram_similarity, words
from learning.models import CandidateKind, CandidateStatus, LearningCandidate

# At most this many rows of each source reach the Python checks.
MAX_ROWS = 60
MEMORY_KINDS = {CandidateKind.PREFERENCE, CandidateKind.DURABLE_FACT}
TRGM_THRESHOLD = 0.3  # pg_trgm.similarity_threshold's default, used on SQLite too
# Exactly the expressions of the full-text indexes, so the planner can use them.
STRATEGY_TSV = (
    "to_tsvector('english', playbooks_strategy.description || ' ' || "
    "playbooks_strategy.context)"
)
MEMORY_TSV = "to_tsvector('english', playbooks_memory.content)"
CANDIDATE_TSV = "to_tsvector('english', learning_learningcandidate.content)"


@dataclass
class Item:
    """One thing a candidate may contradict or duplicate."""

    type: str  # strategy | memory | skill | candidate
    id: object
    text: str
    sign: int = 1  # -1: the text describes something to avoid (harmful)
    label: str = ""
    obj: object = field(default=None, repr=False)

    def related(self) -> dict:
        return {"type": self.type, "id": self.id, "text": self.text[:500]}


def candidate_text(candidate) -> str:
    """The text that would become curated: the content plus, for skill patches, the
    lines the patch adds."""
    text = candidate.content or ""
    if candidate.patch:
        added = [
            line[1:] for line in candidate.patch.splitlines()
            if line.startswith("+") and not line.startswith("+++")
        ]
        text = "\n".join([text, *added])
    return text


def candidate_sign(candidate) -> int:
    return -1 if candidate.kind == CandidateKind.STRATEGY_HARMFUL else 1


def _pair_tsquery(terms: list[str]) -> str:
    """`(a & b) | (a & c) | …`: rows sharing at least two specific words with the
    candidate (one word when it has only one)."""
    if not terms:
        return ""
    if len(terms) == 1:
        return terms[0]
    return " | ".join(f"({a} & {b})" for a, b in combinations(terms, 2))


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def _indexed_filter(qs, *, field_name: str, tsv_sql: str, text: str, terms: list[str]):
    """Rows whose `field_name` is trigram-similar to `text` or whose full-text vector
    (`tsv_sql`, exactly the index expression) matches two of `terms`; most similar
    first, at most MAX_ROWS."""
    cond = Q(**{f"{field_name}__trigram_similar": text})
    tsquery = _pair_tsquery(terms)
    if tsquery:
        cond |= Q(
            RawSQL(
                f"{tsv_sql} @@ to_tsquery('english', %s)", [tsquery],
                output_field=BooleanField(),
            )
        )
    return (
        qs.filter(cond)
        .annotate(_sim=TrigramSimilarity(field_name, text))
        .order_by("-_sim", "-pk")[:MAX_ROWS]
    )


def _python_filter(rows, *, text: str, terms: list[str], get_text) -> list:
    """The same rule as `_indexed_filter`, in Python (SQLite)."""
    wanted = set(terms)
    need = 1 if len(terms) == 1 else 2
    scored = []
    for row in rows:
        other = get_text(row)
        sim = trigram_similarity(text, other)
        shared = len(wanted & set(words(other.lower()))) if wanted else 0
        if sim >= TRGM_THRESHOLD or (wanted and shared >= need):
            scored.append((sim, row.pk, row))
    scored.sort(key=lambda t: (t[0], t[1]), reverse=True)
    return [row for _, _, row in scored[:MAX_ROWS]]


def _similar_rows(qs, *, field_name: str, tsv_sql: str, text: str, extra_text=None):
    terms = query_terms(text)
    if _postgres():
        return list(
            _indexed_filter(qs, field_name=field_name, tsv_sql=tsv_sql, text=text,
                            terms=terms)
        )
    get_text = extra_text or (lambda row: getattr(row, field_name))
    return _python_filter(qs.iterator(), text=text, terms=terms, get_text=get_text)


def strategy_items(candidate, text: str) -> list[Item]:
    from playbooks.models import Playbook, Strategy, StrategyType

    qs = Strategy.objects.filter(active=True)
    if candidate.playbook_id:
        qs = qs.filter(playbook_id=candidate.playbook_id)
    else:
        qs = qs.filter(
            playbook__in=Playbook.objects.filter(namespace_id=candidate.namespace_id)
        )
    rows = _similar_rows(
        qs.only("id", "type", "description", "context"),
        field_name="description",
        tsv_sql=STRATEGY_TSV,
        text=text,
        extra_text=lambda row: f"{row.description} {row.context}",
    )
    return [
        Item(
            type="strategy", id=row.pk, text=row.description, obj=row,
            sign=-1 if row.type == StrategyType.HARMFUL else 1,
            label=f"{row.type} strategy #{row.pk}",
        )
        for row in rows
    ]


def memory_items(candidate, text: str) -> list[Item]:
    from playbooks.models import Memory

    scope = Q(scope="namespace")
    if candidate.user_id:
        scope |= Q(scope="user", user_id=candidate.user_id)
    qs = Memory.objects.filter(scope, namespace_id=candidate.namespace_id, active=True)
    rows = _similar_rows(
        qs.only("id", "kind", "content"),
        field_name="content",
        tsv_sql=MEMORY_TSV,
        text=text,
    )
    return [
        Item(type="memory", id=row.pk, text=row.content, obj=row,
             label=f"{row.kind} memory #{row.pk}")
        for row in rows
    ]


def skill_items(candidate) -> list[Item]:
    """The lines of the targeted skill, less those the patch removes."""
    skill = candidate.skill
    if skill is None:
        return []
    removed = {
        line[1:].strip() for line in (candidate.patch or "").splitlines()
        if line.startswith("-") and not line.startswith("---")
    }
    items = []
    for n, line in enumerate((skill.text or "").splitlines(), start=1):
        line = line.strip()
        if len(line) < 8 or line in removed:
            continue
        items.append(
            Item(type="skill", id=skill.pk, text=line, obj=skill,
                 label=f"skill {skill.slug} line {n}")
        )
    return items


def pending_candidate_items(candidate, text: str) -> list[Item]:
    """Other pending candidates with the same target."""
    qs = LearningCandidate.objects.filter(
        namespace_id=candidate.namespace_id,
        status=CandidateStatus.PENDING,
        playbook_id=candidate.playbook_id,
        skill_id=candidate.skill_id,
    ).exclude(pk=candidate.pk)
    if candidate.kind in MEMORY_KINDS:
        qs = qs.filter(user_id=candidate.user_id)
    rows = _similar_rows(
        qs.only(
            "id", "kind", "content", "patch", "playbook_id", "skill_id", "user_id",
            "created_at", "evidence_count", "namespace_id", "status",
        ),
        field_name="content",
        tsv_sql=CANDIDATE_TSV,
        text=text,
    )
    return [
        Item(type="candidate", id=row.pk, text=row.content, obj=row,
             sign=candidate_sign(row), label=f"pending {row.kind} candidate #{row.pk}")
        for row in rows
    ]


def scope_items(candidate) -> list[Item]:
    """Everything in the candidate's scope that shares its subject."""
    text = candidate_text(candidate)
    return [
        *strategy_items(candidate, text),
        *memory_items(candidate, text),
        *skill_items(candidate),
        *pending_candidate_items(candidate, text),
    ]
