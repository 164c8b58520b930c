"""Whether one lesson contradicts another: the same situation and subject with the
opposite polarity, or the same decision with a different value (a quantity, an order,
a target, a language, a channel, a place, a fact's attribute). Lessons with the lesson
shape (`learning.lessons`: polarity, when, directive) are compared by their structure;
texts without it (memories, skill lines, policy sentences) by reading them sentence by
sentence. Pure functions (no database); the conflict audit, the policy check and the
near-duplicate rule use them."""

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

from learning.lessons import AVOID, POLARITIES
from learning.text.analysis import (
    Analysis,
    analyse,
    different_names,
    jaccard,
    overlap,
    sentences,
    text_names,
)
from learning.text.readings import (
    content_stems_of,
    contrast_swapped,
    fact_difference,
    fact_reading,
    has_order,
    is_narration,
    order_swapped,
    policy_breach,
    situations_compatible,
)

MIN_SHARED = 2  # subject words two sentences must share …
MIN_JACCARD = 0.4  # … and how much of their subjects must agree,
CONTAINED = 0.9  # … or how much of the shorter subject the longer must hold
VALUE_JACCARD = 0.5  # changed values need a closer subject match …
VALUE_MIN_SHARED = 3  # … on at least three words ("2 of 3 runs" is not a setting)
MAX_SENTENCES = 40
FACT_KINDS = frozenset({"durable_fact"})
ORDER_AXIS = "before/after"


@dataclass(frozen=True)
class LessonText:
    """One side of a comparison: the text as curated (a candidate's content, a
    strategy's description, a memory, a skill line, a policy sentence) and, when it
    has one, its lesson shape. `sign` -1 marks a raw text that describes what to avoid
    (only for texts without a shape)."""

    text: str
    polarity: str = ""
    when: str = ""
    directive: str = ""
    kind: str = ""
    entity: str = ""
    sign: int = 1

    @property
    def shaped(self) -> bool:
        return self.polarity in POLARITIES and bool((self.directive or "").strip())


def as_lesson(value, sign: int = 1) -> LessonText:
    if isinstance(value, LessonText):
        return value
    return LessonText(text=value or "", sign=sign)


@dataclass
class Contradiction:
    """How two statements disagree: `kind` is polarity | axis | value | order | target
    | fact; for a changed value, its category and the two values."""

    kind: str
    mine: str
    theirs: str
    category: str = ""
    my_value: str = ""
    their_value: str = ""
    subject: frozenset = field(default_factory=frozenset)
    entity: str = ""  # for a fact: what it is about

    def swapped(self) -> "Contradiction":
        """The same disagreement read from the other side."""
        return replace(
            self,
            mine=self.theirs,
            theirs=self.mine,
            my_value=self.their_value,
            their_value=self.my_value,
        )

    @property
    def detail(self) -> str:
        """The difference in a few plain words."""
        if self.kind == "polarity":
            return "opposite advice"
        if self.kind == "axis":
            return f"the opposite choice ({self.category})"
        if self.kind == "order":
            return "the opposite order"
        if self.kind in ("value", "fact", "target"):
            name = f"a different {self.category}" if self.category else "a different "
            return f"{name}: {self.my_value} instead of {self.their_value}".replace(
                "different : ", "different value: "
            )
        return self.kind


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


def _fmt(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _values_differ(a: Analysis, b: Analysis, shared: frozenset, common):
    if len(shared) < VALUE_MIN_SHARED:
        return None
    if jaccard(a.subject - common, b.subject - common) < VALUE_JACCARD:
        return None
    for category, values in a.values.items():
        other = b.values.get(category)
        if other and values != other and not (values <= other or other <= values):
            name, _, unit = category.partition(":")
            unit = f" {unit}" if unit else ""
            return (
                name,
                ", ".join(_fmt(v) + unit for v in sorted(values, key=str)),
                ", ".join(_fmt(v) + unit for v in sorted(other, key=str)),
            )
    return None


def sentence_contradiction(
    a: Analysis, b: Analysis, *, common=frozenset()
) -> Contradiction | None:
    """The first way in which sentence `a` contradicts sentence `b`, or None."""
    if not same_subject(a, b, common=common):
        return None
    shared = (a.subject & b.subject) - common
    if a.sign_on(shared) != b.sign_on(shared):
        return Contradiction("polarity", a.text, b.text, subject=shared)
    for axis, sides in a.axes.items():
        other = b.axes.get(axis)
        if axis == ORDER_AXIS and (has_order(a.text) or has_order(b.text)):
            continue  # "X before Y" is read as an order (order_swapped), not a side
        if other and len(sides) == 1 and len(other) == 1 and sides != other:
            return Contradiction("axis", a.text, b.text, category=axis, subject=shared)
    changed = _values_differ(a, b, shared, common)
    if changed:
        category, mine, theirs = changed
        return Contradiction(
            "value",
            a.text,
            b.text,
            category=category,
            my_value=mine,
            their_value=theirs,
            subject=shared,
        )
    return None


@lru_cache(maxsize=4096)
def text_analyses(text: str, sign: int) -> tuple[Analysis, ...]:
    """Each sentence that advises (clauses narrating the evidence left out); a raw
    harmful entry's sign goes to its first statement only (what follows explains
    it). Cached: an audit reads its candidate's statements once per compared item."""
    parts = [p for p in sentences(text)[:MAX_SENTENCES] if not is_narration(p)]
    if not parts and not is_narration(text):
        parts = [text]
    out, pending_sign = [], sign
    for part in parts:
        analysis = analyse(part, sign=pending_sign)
        if pending_sign != 1 and analysis.subject:
            pending_sign = 1
        out.append(analysis)
    return tuple(out)


def _statements(lesson: LessonText, *, structured: bool) -> Sequence[Analysis]:
    """What a lesson states: with its shape, the directive's clauses with the
    polarity as the first clause's sign (the situation is compared apart); without
    it, every sentence of the text (which carries its own negations)."""
    if not structured:
        return text_analyses(lesson.text, lesson.sign)
    return _directive_analyses(lesson.directive, lesson.polarity == AVOID)


@lru_cache(maxsize=4096)
def _directive_analyses(directive: str, avoid: bool) -> tuple[Analysis, ...]:
    parts = [p for p in sentences(directive)[:MAX_SENTENCES] if not is_narration(p)]
    out = [analyse(part) for part in parts or [directive]]
    if out and avoid:
        # "avoid" governs the whole first clause, whatever negation it holds
        # ("avoid skipping the review" is advice to review).
        out[0] = replace(out[0], base_sign=-1, sign=-out[0].sign)
    return tuple(out)


def advice_text(lesson: LessonText) -> str:
    """The text without the clauses that narrate its evidence."""
    return _advice(lesson.text)


@lru_cache(maxsize=4096)
def _advice(text: str) -> str:
    parts = [p for p in sentences(text) if not is_narration(p)]
    return ". ".join(parts) if parts else ""


def _fact_contradiction(mine: LessonText, theirs: LessonText):
    """Two durable facts: about one entity, an attribute with two values. Returns
    (found, decided): decided is False when they are not facts one can read."""
    if mine.kind not in FACT_KINDS or theirs.kind not in FACT_KINDS:
        return None, False
    a = fact_reading(mine.text, mine.entity)
    b = fact_reading(theirs.text, theirs.entity)
    if a is None or b is None:
        return None, False
    found = fact_difference(a, b)
    if found is None:
        return None, True
    name, my_value, their_value = found
    return (
        Contradiction(
            "fact",
            mine.text,
            theirs.text,
            category=name,
            my_value=my_value,
            their_value=their_value,
            entity=a.entity,
        ),
        True,
    )


def lesson_contradiction(
    mine, theirs, *, my_sign: int = 1, their_sign: int = 1, common=frozenset()
) -> Contradiction | None:
    """Whether lesson `mine` contradicts lesson `theirs` (LessonText or plain text).
    Texts about different entities or tools (each names an id or identifier the other
    does not) never contradict each other; lessons for different situations neither."""
    mine, theirs = as_lesson(mine, my_sign), as_lesson(theirs, their_sign)
    found, decided = _fact_contradiction(mine, theirs)
    if decided:  # facts about one entity: their values may name other ids
        return found
    if different_names(text_names(mine.text), text_names(theirs.text)):
        return None
    structured = mine.shaped and theirs.shaped
    if structured and not situations_compatible(mine.when, theirs.when):
        return None
    my_text, their_text = advice_text(mine), advice_text(theirs)
    if not my_text or not their_text:
        return None
    mine_all = _statements(mine, structured=structured)
    theirs_all = _statements(theirs, structured=structured)
    for a in mine_all:
        for b in theirs_all:
            found = sentence_contradiction(a, b, common=common)
            if found:
                return found
    return _order_or_target(my_text, their_text, common=common)


def _order_or_target(my_text: str, their_text: str, *, common) -> Contradiction | None:
    """ "X before Y" against "Y before X"; "X instead of Y" against "Y, not X" — on
    one subject."""
    a, b = analyse(my_text), analyse(their_text)
    if not same_subject(a, b, common=common):
        return None
    if order_swapped(my_text, their_text, common=common):
        return Contradiction("order", my_text, their_text)
    swapped = contrast_swapped(my_text, their_text)
    if swapped:
        return Contradiction(
            "target",
            my_text,
            their_text,
            category="target",
            my_value=swapped[0],
            their_value=swapped[1],
        )
    return None


def text_contradiction(
    mine: str,
    theirs: str,
    *,
    my_sign: int = 1,
    their_sign: int = 1,
    common=frozenset(),
) -> Contradiction | None:
    """`lesson_contradiction` for two plain texts."""
    return lesson_contradiction(
        mine, theirs, my_sign=my_sign, their_sign=their_sign, common=common
    )


def policy_contradiction(lesson, sentence: str, *, common=frozenset()):
    """Whether a lesson goes against one sentence of the agent's policy: the reading
    of any two texts, or it skips what the sentence requires ("skip authentication"
    against "you have to authenticate the user") or does what it forbids."""
    lesson = as_lesson(lesson)
    found = lesson_contradiction(lesson, sentence, common=common)
    if found:
        return found
    if lesson.shaped:
        directive, sign = lesson.directive, -1 if lesson.polarity == AVOID else 1
    else:
        directive, sign = advice_text(lesson) or lesson.text, lesson.sign
    if not directive:
        return None
    rule = policy_breach(directive, sign, content_stems_of(lesson.text), sentence)
    if rule is None:
        return None
    return Contradiction("polarity", lesson.text, sentence, subject=rule.context)
