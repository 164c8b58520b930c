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
    return frozenset(
        padded[i : i + 3]
        for padded in {f"  {word} " for word in _ALNUM_RUN.findall(normalise(text))}
        for i in range(len(padded) - 2)
    )


_ALNUM_RUN = re.compile(r"[a-z0-9]+")


def trigram_similarity(a: str, b: str) -> float:
    """Same definition as PostgreSQL's pg_trgm similarity()."""
    ta, tb = _trigrams(a), _trigrams(b)
    if not ta or not tb:
        return 0.0
    return len(ta & tb) / len(ta | tb)


def text_similarity(a: str, b: str) -> float:
    """The larger of pg_trgm similarity and stemmed-word Jaccard."""
    return max(trigram_similarity(a, b), jaccard(content_stems(a), content_stems(b)))


# Quoted run content (an error message, a user's words): no quote mark inside, so a
# run of opening quotes is not rescanned from each one (linear).
QUOTED = re.compile(r"[“\"][^“”\"\n]{0,300}[”\"]")
_REASON = re.compile(r",?\s\b(?:since|because|as)\s.*$", re.S)
_TICKED = re.compile(r"`([^`\n]{1,80})`")


def lesson_core(lesson: LessonText) -> str:
    """A lesson without the evidence it carries: its situation and directive with
    quoted text (the error a run got, the question it was asked) and the trailing
    reason ("…, since … rejected with “…”") left out. Lessons without the shape are
    their text."""
    if not lesson.shaped:
        return lesson.text
    directive = _REASON.sub("", QUOTED.sub(" ", lesson.directive))
    return " ".join(f"{_bare_situation(lesson)} {directive}".split())


def _bare_situation(lesson: LessonText) -> str:
    """A lesson's situation without the quoted evidence in it."""
    return " ".join(QUOTED.sub(" ", lesson.when or "").split())


def ticked_names(text: str) -> frozenset:
    """The names a lesson puts in backticks: tools, fields, commands."""
    return frozenset(t.strip().lower() for t in _TICKED.findall(text or ""))


def _same_situation(a: LessonText, b: LessonText) -> bool:
    """Two shaped lessons are about one situation when their situations (quoted
    evidence left out) are both empty or alike: the same advice for "the task asks to
    cancel a reservation" and for "… to update its passengers" is two lessons, whose
    runs must not be merged into one."""
    if not (a.shaped and b.shaped):
        return True
    when_a, when_b = _bare_situation(a), _bare_situation(b)
    if not when_a and not when_b:
        return True
    return bool(when_a and when_b) and _alike(when_a, when_b)


def _alike(a: str, b: str) -> bool:
    stems_a, stems_b = content_stems(a), content_stems(b)
    contained = (
        min(len(stems_a), len(stems_b)) >= CONTAINED_MIN_WORDS
        and overlap(stems_a, stems_b) >= CONTAINED_DUPLICATE
    )
    return (
        trigram_similarity(a, b) >= TRIGRAM_DUPLICATE
        or jaccard(stems_a, stems_b) >= WORDS_DUPLICATE
        or contained
    )


def is_near_duplicate(a, b, *, a_sign: int = 1, b_sign: int = 1) -> bool:
    """The same lesson said twice: same polarity, the same names (ids, tools, the
    fields in backticks), about the same entity, nearly the same words — counting the
    lesson without the evidence it quotes (`lesson_core`) — and never a contradiction:
    a changed polarity ("do" vs "avoid", "do X" vs "do not X") or a changed value (a
    quantity, an order, a target, a language, a fact's attribute) makes a conflict,
    not a copy. `a` and `b` are plain texts (with `a_sign` and `b_sign` -1 for a raw
    text describing what to avoid) or `LessonText`s."""
    a, b = as_lesson(a, a_sign), as_lesson(b, b_sign)
    if a.shaped and b.shaped and a.polarity != b.polarity:
        return False
    if a.sign != b.sign:
        return False
    if a.entity and b.entity and a.entity.lower() != b.entity.lower():
        return False  # facts about two reservations, orders, users
    if different_names(text_names(a.text), text_names(b.text)):
        return False  # one template, different reservations or tools
    core_a, core_b = lesson_core(a), lesson_core(b)
    if ticked_names(core_a) != ticked_names(core_b):
        return False  # "check `payment_id`" and "check `flights`" are two lessons
    if not _same_situation(a, b):
        return False  # one advice in two situations: "when the task asks to cancel"
    if not _alike(a.text, b.text) and (
        (core_a, core_b) == (a.text, b.text) or not _alike(core_a, core_b)
    ):
        return False
    return lesson_contradiction(a, b) is None


__all__ = ["LessonText", "is_near_duplicate", "text_similarity", "trigram_similarity"]
