"""Per-process caches of what every audit reads about its namespace besides the
candidate — the hygiene policy and the agent's policies — and of the word statistics
that steer the comparison look-ups.

The policies are a security matter: an audit must never judge a candidate by a policy
that was changed before it started (PUT /api/v1/policy/, an admin edit, an import),
whichever process made the change. So a cached policy is used only when PostgreSQL says
the rows it was built from are unchanged: the query that loads the candidate also
computes `POLICY_DIGEST_SQL`, an md5 over the namespace's policy rows as they are
committed now (every column, so any write counts — `save()`, `update()`, raw SQL, a
delete), and a different digest reloads them. That costs no extra query and cannot go
stale; on SQLite (no md5) the policies are read on every audit.

The word statistics (pg_stats' most common elements of the full-text indexes) change
only when the table is analysed, and only choose which of a candidate's words lead the
look-up; they are kept for `WORD_STATS_SECONDS`, as PostgreSQL itself only refreshes
them on (auto)analyze."""

import threading
import time

from django.db import connection

# md5 of the namespace's hygiene policy and agent policy rows, for the candidate row
# being read (`learning_learningcandidate.namespace_id`).
POLICY_DIGEST_SQL = """md5(
    coalesce((SELECT h::text FROM playbooks_hygienepolicy h
              WHERE h.namespace_id = learning_learningcandidate.namespace_id), '')
    || '|' ||
    coalesce((SELECT string_agg(a::text, '|' ORDER BY a.id) FROM playbooks_agentpolicy a
              WHERE a.namespace_id = learning_learningcandidate.namespace_id), ''))"""

_lock = threading.Lock()
_policies: dict = {}  # namespace id -> (digest, hygiene Policy, [AgentPolicy])
POLICY_CACHE_SIZE = 1024


def digest_supported() -> bool:
    return connection.vendor == "postgresql"


def namespace_policies(namespace_id: int, digest: str | None = None):
    """(hygiene Policy, the namespace's AgentPolicy rows in id order): from this
    process's cache when `digest` (POLICY_DIGEST_SQL as read with the candidate)
    matches the one they were loaded under, else read now (two queries)."""
    from learning.audits.hygiene import policy_for_namespace
    from playbooks.models import AgentPolicy

    if digest:
        with _lock:
            hit = _policies.get(namespace_id)
        if hit is not None and hit[0] == digest:
            return hit[1], hit[2]
    hygiene = policy_for_namespace(namespace_id)
    agent = list(AgentPolicy.objects.filter(namespace_id=namespace_id).order_by("id"))
    if digest:
        with _lock:
            if len(_policies) >= POLICY_CACHE_SIZE:
                _policies.clear()
            _policies[namespace_id] = (digest, hygiene, agent)
    return hygiene, agent


# --- word statistics -----------------------------------------------------------------

WORD_STATS_SECONDS = 60.0
_word_stats: dict = {}  # index name -> (loaded at, {lexeme: share of rows})
_lexemes: dict = {}  # word -> its english full-text lexeme ("" for a stop word)
LEXEME_CACHE_SIZE = 50_000


def word_stats(stats_source: str) -> dict:
    """{lexeme: share of rows} from pg_stats' most_common_elems of a full-text vector:
    `stats_source` names an expression index ("strategy_desc_fts", whose statistics
    PostgreSQL keeps under the index's name) or a stored column ("table.column").
    Empty when there are no statistics yet."""
    now = time.monotonic()
    with _lock:
        hit = _word_stats.get(stats_source)
    if hit is not None and now - hit[0] < WORD_STATS_SECONDS:
        return hit[1]
    relation, _, column = stats_source.partition(".")
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT e.elem, e.freq
            FROM pg_stats s,
                 unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs)
                     AS e(elem, freq)
            WHERE s.tablename = %s AND (%s = '' OR s.attname = %s)
            """,
            [relation, column, column],
        )
        stats: dict = {}
        for elem, freq in cursor.fetchall():
            stats.setdefault(elem, freq)
    with _lock:
        _word_stats[stats_source] = (now, stats)
    return stats


def lexemes(words: list[str]) -> dict:
    """{word: its lexeme under the 'english' configuration}, as the index stores it
    (one query for the words not seen before in this process)."""
    with _lock:
        missing = [w for w in dict.fromkeys(words) if w not in _lexemes]
    if missing:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT t, array_to_string(tsvector_to_array(to_tsvector('english', t)),"
                " ' ') FROM unnest(%s::text[]) AS u(t)",
                [missing],
            )
            found = dict(cursor.fetchall())
        with _lock:
            if len(_lexemes) + len(found) > LEXEME_CACHE_SIZE:
                _lexemes.clear()
            _lexemes.update(found)
    with _lock:
        return {w: _lexemes.get(w, "") for w in words}


def caches_clear() -> None:
    """Forget everything cached (tests; nothing in the product needs it)."""
    with _lock:
        _policies.clear()
        _word_stats.clear()
        _lexemes.clear()
