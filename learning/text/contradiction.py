"""Whether one lesson text contradicts another on the same subject: contradiction
pairs, negation, opposite choices and changed values, compared sentence by sentence,
only between texts about one subject. Pure functions (no database); the conflict audit
and the near-duplicate rule use them."""

from dataclasses import dataclass

from learning.text.analysis import (
    Analysis,
    analyse,
    different_names,
    jaccard,
    overlap,
    sentences,
)

MIN_SHARED = 2  # subject words two sentences must share …
MIN_JACCARD = 0.4  # … and how much of their subjects must agree,
CONTAINED = 0.9  # … or how much of the shorter subject the longer must hold
VALUE_JACCARD = 0.5  # changed values need a closer subject match …
VALUE_MIN_SHARED = 3  # … on at least three words ("2 of 3 runs" is not a setting)
MAX_SENTENCES = 40


@dataclass
class Contradiction:
    kind: str  # negation | pair | axis | value
    detail: str
    mine: str
    theirs: str


def same_subject(
    a: Analysis, b: Analysis, *, threshold: float = MIN_JACCARD, common=frozenset()
) -> bool:
    """Both sentences are about one thing: most of their subject words agree, or the
    shorter one's subject lies inside the longer one's ("skip X before Y" against
    "do X before Y to check a, b and c"). Words most of the scope uses (`common`,
    template words of generated texts) do not count."""
    sa, sb = a.subject - common, b.subject - common
    shared = sa & sb
    score = jaccard(sa, sb)
    if len(shared) < MIN_SHARED:
        return False
    return score >= threshold or overlap(sa, sb) >= CONTAINED


def _describe_sign(a: Analysis) -> str:
    markers = [*a.negations, *a.pair_words]
    return "/".join(markers) if markers else "plain"


def sentence_contradiction(
    a: Analysis, b: Analysis, *, common=frozenset()
) -> Contradiction | None:
    """The first way in which `a` contradicts `b`, or None."""
    if not same_subject(a, b, common=common):
        return None
    shared = (a.subject & b.subject) - common
    subject = ", ".join(sorted(shared))
    if a.sign_on(shared) != b.sign_on(shared):
        kind = "pair" if (a.pair_words or b.pair_words) else "negation"
        return Contradiction(
            kind=kind,
            detail=f"opposite polarity ({_describe_sign(a)} vs {_describe_sign(b)}) "
            f"on {subject}",
            mine=a.text,
            theirs=b.text,
        )
    for axis, sides in a.axes.items():
        other = b.axes.get(axis)
        if other and len(sides) == 1 and len(other) == 1 and sides != other:
            return Contradiction(
                kind="axis",
                detail=f"opposite {axis} on {subject}",
                mine=a.text,
                theirs=b.text,
            )
    if (
        len(shared) >= VALUE_MIN_SHARED
        and jaccard(a.subject - common, b.subject - common) >= VALUE_JACCARD
    ):
        for category, values in a.values.items():
            other = b.values.get(category)
            if other and values != other and not (values <= other or other <= values):
                name = category.split(":")[0]
                shown = ", ".join(str(_fmt(v)) for v in sorted(values, key=str))
                theirs = ", ".join(str(_fmt(v)) for v in sorted(other, key=str))
                return Contradiction(
                    kind="value",
                    detail=f"changed {name} ({shown} vs {theirs}) on {subject}",
                    mine=a.text,
                    theirs=b.text,
                )
    return None


def _fmt(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def text_analyses(text: str, sign: int) -> list[Analysis]:
    """Each sentence analysed; a harmful entry's sign goes to its first statement only
    (what follows explains it)."""
    parts = sentences(text)[:MAX_SENTENCES] or [text]
    out, pending_sign = [], sign
    for part in parts:
        analysis = analyse(part, sign=pending_sign)
        if pending_sign != 1 and analysis.subject:
            pending_sign = 1
        out.append(analysis)
    return out


def text_contradiction(
    mine: str,
    theirs: str,
    *,
    my_sign: int = 1,
    their_sign: int = 1,
    common=frozenset(),
) -> Contradiction | None:
    """Whether any sentence of `mine` contradicts any sentence of `theirs`. Texts
    about different entities or tools (each names an id or identifier the other does
    not: reservations, users, tools) do not contradict each other."""
    mine_all, theirs_all = (
        text_analyses(mine, my_sign),
        text_analyses(theirs, their_sign),
    )
    my_ids = frozenset().union(*(a.ids for a in mine_all))
    their_ids = frozenset().union(*(b.ids for b in theirs_all))
    if different_names(my_ids, their_ids):
        return None
    for a in mine_all:
        for b in theirs_all:
            found = sentence_contradiction(a, b, common=common)
            if found:
                return found
    return None
