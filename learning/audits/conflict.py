"""Conflict audit: does a candidate contradict curated knowledge (or a pending
candidate) on the same subject? Contradiction pairs, negation and changed quantities
or choices, compared sentence by sentence, only between texts about one subject."""
from dataclasses import dataclass

from learning.audits.text import Analysis, analyse, jaccard, overlap, sentences

MIN_SHARED = 2  # subject words two sentences must share …
MIN_JACCARD = 0.4  # … and how much of their subjects must agree,
CONTAINED = 0.9  # … or how much of the shorter subject the longer must hold
VALUE_JACCARD = 0.5  # changed values need a closer subject match
MAX_SENTENCES = 40


@dataclass
class Contradiction:
    kind: str  # negation | pair | axis | value
    detail: str
    mine: str
    theirs: str


def same_subject(a: Analysis, b: Analysis, *, threshold: float = MIN_JACCARD) -> bool:
    """Both sentences are about one thing: most of their subject words agree, or the
    shorter one's subject lies inside the longer one's ("skip X before Y" against
    "do X before Y to check a, b and c")."""
    shared = a.subject & b.subject
    score = jaccard(a.subject, b.subject)
    if len(shared) == 1:
        return score == 1.0
    if len(shared) < MIN_SHARED:
        return False
    return score >= threshold or overlap(a.subject, b.subject) >= CONTAINED


def _describe_sign(a: Analysis) -> str:
    markers = [*a.negations, *a.pair_words]
    return "/".join(markers) if markers else "plain"


def sentence_contradiction(a: Analysis, b: Analysis) -> Contradiction | None:
    """The first way in which `a` contradicts `b`, or None."""
    if not same_subject(a, b):
        return None
    shared = a.subject & b.subject
    subject = ", ".join(sorted(shared))
    if a.sign_on(shared) != b.sign_on(shared):
        kind = "pair" if (a.pair_words or b.pair_words) else "negation"
        return Contradiction(
            kind=kind,
            detail=f"opposite polarity ({_describe_sign(a)} vs {_describe_sign(b)}) "
            f"on {subject}",
            mine=a.text, theirs=b.text,
        )
    for axis, sides in a.axes.items():
        other = b.axes.get(axis)
        if other and len(sides) == 1 and len(other) == 1 and sides != other:
            return Contradiction(
                kind="axis", detail=f"opposite {axis} on {subject}",
                mine=a.text, theirs=b.text,
            )
    if jaccard(a.subject, b.subject) >= VALUE_JACCARD:
        for category, values in a.values.items():
            other = b.values.get(category)
            if other and values != other and not (values <= other or other <= values):
                name = category.split(":")[0]
                shown = ", ".join(str(_fmt(v)) for v in sorted(values, key=str))
                theirs = ", ".join(str(_fmt(v)) for v in sorted(other, key=str))
                return Contradiction(
                    kind="value",
                    detail=f"changed {name} ({shown} vs {theirs}) on {subject}",
                    mine=a.text, theirs=b.text,
                )
    return None


def _fmt(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _analyses(text: str, sign: int) -> list[Analysis]:
    parts = sentences(text)[:MAX_SENTENCES] or [text]
    return [analyse(part, sign=sign) for part in parts]


def text_contradiction(
    mine: str, theirs: str, *, my_sign: int = 1, their_sign: int = 1
) -> Contradiction | None:
    """Whether any sentence of `mine` contradicts any sentence of `theirs`."""
    for a in _analyses(mine, my_sign):
        for b in _analyses(theirs, their_sign):
            found = sentence_contradiction(a, b)
            if found:
                return found
    return None


def conflict_findings(*, text: str, sign: int, items: list) -> list[dict]:
    """One finding per contradicted item (severity warn: a reviewer decides, with
    both texts side by side)."""
    findings = []
    for item in items:
        found = text_contradiction(text, item.text, my_sign=sign, their_sign=item.sign)
        if not found:
            continue
        findings.append(
            {
                "severity": "warn",
                "message": f"Contradicts {item.label}: {found.detail}.",
                "related": [item.related()],
                "kind": found.kind,
            }
        )
    return findings
