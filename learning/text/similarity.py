"""How alike two lesson texts are — the one definition of "the same lesson" used by
the duplicate audit, nightly curation and recall's fallback matcher: pg_trgm-style
trigram similarity, stemmed-word Jaccard, containment, and the rule that a pair with
opposite meaning or a changed value is never a duplicate."""

import re
from functools import lru_cache

from learning.text.analysis import (
    STOPWORDS,
    different_names,
    jaccard,
    normalise,
    overlap,
    stem,
    text_names,
    words,
)
from learning.text.contradiction import LessonText, as_lesson, lesson_contradiction

TRIGRAM_DUPLICATE = 0.7
WORDS_DUPLICATE = 0.75
# One text is the other plus an explanation: every word of a long enough shorter one.
CONTAINED_DUPLICATE = 0.95
CONTAINED_MIN_WORDS = 8


@lru_cache(maxsize=4096)
def content_stems(text: str) -> frozenset:
    """Stemmed words without stopwords (markers kept): for duplicate detection."""
    toks = words(normalise(text))
    return frozenset(stem(t.replace("'", "")) for t in toks if t not in STOPWORDS)


@lru_cache(maxsize=4096)
def _trigrams(text: str) -> frozenset[str]:
    """pg_trgm's trigrams: each alphanumeric word padded with two spaces before and
    one after."""
    grams: set[str] = set()
    for word in re.findall(r"[a-z0-9]+", normalise(text)):
        padded = f"  {word} "
        grams.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return frozenset(grams)


def trigram_similarity(a: str, b: str) -> float:
    """Same definition as PostgreSQL's pg_trgm similarity()."""
    ta, tb = _trigrams(a), _trigrams(b)
    if not ta or not tb:
        return 0.0
    return len(ta & tb) / len(ta | tb)


def text_similarity(a: str, b: str) -> float:
    """The larger of pg_trgm similarity and stemmed-word Jaccard."""
    return max(trigram_similarity(a, b), jaccard(content_stems(a), content_stems(b)))


def is_near_duplicate(a, b, *, a_sign: int = 1, b_sign: int = 1) -> bool:
    """The same lesson said twice: same polarity, the same names (ids, tools), nearly
    the same words — and never a contradiction: a changed polarity ("do" vs "avoid",
    "do X" vs "do not X") or a changed value (a quantity, an order, a target, a
    language) makes a conflict, not a copy. `a` and `b` are plain texts (with `a_sign`
    and `b_sign` -1 for a raw text describing what to avoid) or `LessonText`s."""
    a, b = as_lesson(a, a_sign), as_lesson(b, b_sign)
    if a.shaped and b.shaped and a.polarity != b.polarity:
        return False
    if a.sign != b.sign:
        return False
    if different_names(text_names(a.text), text_names(b.text)):
        return False  # one template, different reservations or tools
    stems_a, stems_b = content_stems(a.text), content_stems(b.text)
    contained = (
        min(len(stems_a), len(stems_b)) >= CONTAINED_MIN_WORDS
        and overlap(stems_a, stems_b) >= CONTAINED_DUPLICATE
    )
    if (
        trigram_similarity(a.text, b.text) < TRIGRAM_DUPLICATE
        and jaccard(stems_a, stems_b) < WORDS_DUPLICATE
        and not contained
    ):
        return False
    return lesson_contradiction(a, b) is None


__all__ = ["LessonText", "is_near_duplicate", "text_similarity", "trigram_similarity"]
