"""Readings of a lesson beyond its words and polarity: which clauses only narrate the
evidence, the order a sentence puts two actions in, what it chooses instead of what,
the attributes a durable fact states, and whether two situations are the same. Pure
functions; `learning.text.contradiction` combines them. Every pattern here runs in
linear time (no nested or adjacent unbounded quantifiers over the same characters)."""

import re
from dataclasses import dataclass
from functools import lru_cache

from learning.text.analysis import (
    _ALL_MARKERS,
    NEGATORS,
    STOPWORDS,
    analyse,
    concept,
    jaccard,
    normalise,
    overlap,
    stem,
    words,
)

# --- narration: "this run left 3 of 6 unchecked" explains, it does not advise --------

_RUN_NOUN = r"runs?\b(?!\s(?:on|in|at|into|out|as|under|from|twice|every|again)\b)"
_NARRATION = re.compile(
    r"\b(?:this|that|these|those)\s(?:[a-z_\-]{1,30}\s)?"
    + _RUN_NOUN
    + r"|\b(?:successful|failed|failing|succeeding|previous|earlier|comparable)\s"
    r"(?:[a-z_\-]{1,30}\s)?" + _RUN_NOUN + r"|\b\d{1,6}\s(?:of|out\sof)\s\d{1,6}\b"
    r"|\bnone\sof\sthe\b"
    r"|\bseen\s(?:in\s)?\d{1,6}\s(?:times?|runs?)\b"
    r"|\bthe\sevaluator\b"
    r"|\bstep\s\d{1,6}\b"
    r"|\bin\sthis\s(?:trajectory|episode|conversation|session)\b"
)


def is_narration(clause: str) -> bool:
    """A clause about the runs the lesson came from ("2 of 2 successful runs did",
    "this run called it without …", "the evaluator expected …"): evidence, not advice,
    so it never takes part in a contradiction."""
    return bool(_NARRATION.search(normalise(clause)))


# --- order: "X before Y" against "Y before X" ----------------------------------------

_ORDER_WORDS = {"before": 1, "after": -1, "then": 1, "prior to": 1}
_ORDER_SPLIT = re.compile(r"\b(before|after|then|prior to)\b")
_LEADING_ORDER = re.compile(r"^(?:always\s|first\s|only\s)?(before|after|prior to)\s")


def has_order(text: str) -> bool:
    """Whether a sentence orders two actions with before/after/then/prior to."""
    return bool(_ORDER_SPLIT.search(normalise(text)))


def _order_stems(text: str) -> frozenset:
    out = set()
    for tok in words(text):
        bare = tok.replace("'", "")
        if tok in STOPWORDS or tok in _ALL_MARKERS or len(bare) <= 2:
            continue
        out.add(concept(stem(bare)))
    return frozenset(out)


@lru_cache(maxsize=4096)
def order_pairs(text: str) -> tuple[tuple[frozenset, frozenset], ...]:
    """(earlier, later) word sets for each clause that orders two actions: "Run the
    migrations before deploying", "Before calling X, call Y", "After Y, do X", "do X,
    then Y"."""
    pairs = []
    for clause in re.split(r"[.;!?\n]", normalise(text)):
        clause = clause.strip()
        if not clause:
            continue
        lead = _LEADING_ORDER.match(clause)
        if lead and "," in clause:
            head, _, rest = clause[lead.end() :].partition(",")
            first, second = _order_stems(rest), _order_stems(head)
            if _ORDER_WORDS[lead.group(1)] < 0:
                first, second = second, first
        else:
            match = _ORDER_SPLIT.search(clause)
            if not match or match.start() == 0:
                continue
            first = _order_stems(clause[: match.start()])
            second = _order_stems(clause[match.end() :])
            if _ORDER_WORDS[match.group(1)] < 0:
                first, second = second, first
        if first and second:
            pairs.append((first, second))
    return tuple(pairs)


def order_swapped(mine: str, theirs: str, *, common=frozenset()) -> bool:
    """One text puts A before B, the other B before A (A and B told apart by words
    that sit on one side only of each)."""
    for a_first, a_then in order_pairs(mine):
        for b_first, b_then in order_pairs(theirs):
            moved_back = (a_first & b_then) - b_first - a_then - common
            moved_up = (a_then & b_first) - b_then - a_first - common
            if moved_back and moved_up:
                return True
    return False


# --- contrast: "the production bucket instead of the scratch bucket" -----------------

_CONTRAST = re.compile(
    r"\b(?:instead\sof|rather\sthan|in\splace\sof|over|not)\s(?:the\s|a\s|an\s)?"
)
_CONTRAST_VERBS = frozenset(
    """do does did is are was were be should must can could will would may might
    shall have has had""".split()
)
CONTRAST_WINDOW = 4
CONTRAST_LEAD = (
    200  # characters read on each side of a contrast word (ample for 4 words)
)


@lru_cache(maxsize=4096)
def contrasts(text: str) -> tuple[tuple[frozenset, frozenset], ...]:
    """(chosen, rejected) word sets: "use X instead of Y", "store in X, not Y", "X
    rather than Y". A "not" right after a verb ("do not", "is not") negates, it does
    not contrast."""
    out = []
    for clause in re.split(r"[.;!?\n]", normalise(text)):
        for match in _CONTRAST.finditer(clause):
            # only the words just before count: a window, so a long clause with many
            # matches is read in linear time
            lead = clause[max(0, match.start() - CONTRAST_LEAD) : match.start()]
            before = words(lead)
            if not before:
                continue
            word = match.group(0).split()[0]
            if word in ("not", "over"):
                if before[-1] in _CONTRAST_VERBS or before[-1] in NEGATORS:
                    continue
                if word == "not" and not lead.rstrip().endswith(","):
                    continue  # "X not Y" without a comma is rarely a contrast
            chosen = _order_stems(" ".join(before[-CONTRAST_WINDOW:]))
            rejected = _order_stems(
                " ".join(
                    words(clause[match.end() : match.end() + CONTRAST_LEAD])[
                        :CONTRAST_WINDOW
                    ]
                )
            )
            if chosen and rejected:
                out.append((chosen, rejected))
    return tuple(out)


def contrast_swapped(mine: str, theirs: str) -> tuple[str, str] | None:
    """One text chooses X over Y, the other Y over X: the words that tell them apart
    (what `mine` chooses, what `theirs` chooses), else None."""
    for a_chosen, a_rejected in contrasts(mine):
        a_only, a_not = a_chosen - a_rejected, a_rejected - a_chosen
        for b_chosen, b_rejected in contrasts(theirs):
            b_only, b_not = b_chosen - b_rejected, b_rejected - b_chosen
            if (a_only & b_not) and (a_not & b_only):
                return (
                    " ".join(sorted(a_only & b_not)),
                    " ".join(sorted(b_only & a_not)),
                )
    return None


# --- durable facts: the attributes they state ---------------------------------------


@dataclass(frozen=True)
class FactReading:
    entity: str
    attributes: dict  # name (lower case) -> value as written


def _fact_entity(text: str) -> str:
    for tok in words(normalise(text)):
        if re.search(r"\d", tok) and re.search(r"[a-z]", tok) and len(tok) >= 4:
            return tok
    return ""


@lru_cache(maxsize=4096)
def fact_reading(text: str, entity: str = "") -> FactReading | None:
    """ "Reservation OBUT9V (…) at the end of the run: flights HAT078, HAT118, cabin
    economy, total baggages 2" → the entity and {"flights": "HAT078, HAT118",
    "cabin": "economy", "total baggages": "2"}: each comma-separated part is a name
    and its value (the last word); a part of one word continues the list before it."""
    head, sep, body = (text or "").partition(": ")
    if not sep:
        return None
    attributes: dict[str, str] = {}
    key = ""
    for segment in body.strip().rstrip(".").split(", "):
        parts = segment.split()
        if len(parts) >= 2 and not re.search(r"\d", " ".join(parts[:-1])):
            key = " ".join(parts[:-1]).lower()
            attributes[key] = parts[-1]
        elif key and parts:
            attributes[key] = f"{attributes[key]}, {segment.strip()}"
    if not attributes:
        return None
    return FactReading(
        entity=(entity or "").rpartition(":")[2].lower() or _fact_entity(head),
        attributes=attributes,
    )


# A state that ends what a fact describes: a fact stating it and one that describes
# the same entity as live (flights, items, a balance) cannot both hold.
_TERMINAL_STATES = frozenset(
    """cancelled canceled closed deleted removed refunded expired inactive archived
    terminated revoked voided""".split()
)
STATUS_KEYS = ("status", "state")


def fact_difference(mine: FactReading, theirs: FactReading):
    """The first attribute both facts state about one entity with different values:
    (name, mine, theirs); or a terminal status ("status cancelled") one of them states
    and the other does not; else None."""
    if not mine.entity or mine.entity != theirs.entity:
        return None
    for key, value in mine.attributes.items():
        other = theirs.attributes.get(key)
        if other is not None and other.lower() != value.lower():
            return key, value, other
    for key in STATUS_KEYS:
        a, b = mine.attributes.get(key), theirs.attributes.get(key)
        if (a is None) != (b is None):
            state = (a or b).lower()
            if state in _TERMINAL_STATES:
                return (key, a or f"not {state}", b or f"not {state}")
    return None


# --- situations ----------------------------------------------------------------------

SITUATION_OVERLAP = 0.6
SITUATION_JACCARD = 0.5


def situations_compatible(mine: str, theirs: str) -> bool:
    """Whether two lessons' situations (`when`) can be the same moment: either is
    general (empty), or one situation lies inside the other, or most of their words
    agree — and neither is the negation of the other ("has insurance" against "has no
    insurance") or sets another value ("over $100" against "over $50")."""
    if not mine.strip() or not theirs.strip():
        return True
    a, b = analyse(mine), analyse(theirs)
    if not a.subject or not b.subject:
        return True
    shared = a.subject & b.subject
    if overlap(a.subject, b.subject) < SITUATION_OVERLAP:
        return False
    if not (
        a.subject <= b.subject
        or b.subject <= a.subject
        or jaccard(a.subject, b.subject) >= SITUATION_JACCARD
        or len(shared) >= 2
    ):
        return False
    if a.sign_on(shared) != b.sign_on(shared):
        return False
    for category, values in a.values.items():
        other = b.values.get(category)
        if other and not (values <= other or other <= values):
            return False
    return True


# --- policies: what they require and forbid ----------------------------------------

_FORBID_1 = frozenset({"never", "cannot", "can't", "mustn't", "shouldn't", "don't"})
_FORBID_2 = frozenset(
    {
        ("must", "not"),
        ("should", "not"),
        ("can", "not"),
        ("do", "not"),
        ("may", "not"),
        ("not", "allowed"),
    }
)
_OBLIGE_1 = frozenset({"must", "should", "always"})
_OBLIGE_2 = frozenset(
    {("have", "to"), ("has", "to"), ("need", "to"), ("needs", "to"), ("required", "to")}
)
_FILLERS = frozenset("be ever always first also only to allowed sure then".split())
# Verbs whose meaning is their object: "obtain explicit user confirmation" is about
# confirming, "make a tool call" about calling.
_LIGHT_VERBS = frozenset(
    "obtain obtaining get getting make making take taking give giving do doing perform "
    "performing receive request seek".split()
)
_ASK_INFO = frozenset("for if whether about what which how when where".split())
_ASK = frozenset({"ask", "asks", "asking", "asked"})
COORDINATED_WINDOW = 12  # "must list the details and obtain …": verbs after "and"
# A rule with an exception ("if and only if", "unless") or a lesson that only limits
# repetition ("do not ask again") is not a plain requirement or prohibition.
_CONDITIONAL = re.compile(r"\b(?:only\sif|unless|except|other\sthan)\b")
_REPEAT = re.compile(r"\b(?:again|twice|repeatedly|more\sthan\sonce|anymore)\b")
_LEADS = frozenset(
    "always first please also then only just simply immediately directly".split()
)


@dataclass(frozen=True)
class PolicyRule:
    sign: int  # +1 required, -1 forbidden
    actions: frozenset  # stems naming the action
    context: frozenset  # the other content words of the sentence


def _bare(tok: str) -> str:
    return tok.replace("'", "")


def _action_at(toks: list[str], i: int) -> frozenset:
    """The stems naming the action of the verb at `i`: the verb, and for a light
    verb the head of its object; "ask for/if …" is a request for information."""
    word = toks[i]
    following = toks[i + 1] if i + 1 < len(toks) else ""
    if word in _ASK and following in _ASK_INFO:
        return frozenset({"ask_for"})
    stems = {concept(stem(_bare(word)))}
    if word in _LIGHT_VERBS:
        head = ""
        for tok in toks[i + 1 : i + 4]:
            if tok in STOPWORDS or tok in _ALL_MARKERS or tok in NEGATORS:
                if head:
                    break
                continue
            head = tok
        if head:
            stems.add(concept(stem(_bare(head))))
    return frozenset(stems)


def _trigger(toks: list[str], i: int) -> tuple[int, int]:
    """(sign, length) of a requirement (+1) or prohibition (-1) starting at `i`."""
    pair = (toks[i], toks[i + 1]) if i + 1 < len(toks) else None
    if pair in _FORBID_2:
        return -1, 2
    if toks[i] in _FORBID_1:
        return -1, 1
    if pair in _OBLIGE_2:
        return 1, 2
    if toks[i] in _OBLIGE_1 and not (pair and pair[1] in ("not", "never")):
        return 1, 1
    return 0, 0


def _verb_after(toks: list[str], i: int) -> int:
    while i < len(toks) and toks[i] in _FILLERS:
        i += 1
    if i < len(toks) and toks[i] not in NEGATORS and toks[i] not in STOPWORDS:
        return i
    return -1


@lru_cache(maxsize=4096)
def policy_rules(sentence: str) -> tuple[PolicyRule, ...]:
    """What a policy sentence requires ("you have to authenticate the user", "must
    list the details and obtain explicit user confirmation") or forbids ("basic
    economy flights cannot be modified"), unless it states an exception."""
    norm = normalise(sentence)
    if _CONDITIONAL.search(norm):
        return ()
    context = _order_stems(norm)
    toks = words(norm)
    rules = []
    i = 0
    while i < len(toks):
        sign, length = _trigger(toks, i)
        verb = _verb_after(toks, i + length) if sign else -1
        if verb < 0:
            i += 1
            continue
        actions = set(_action_at(toks, verb))
        window = toks[verb + 1 : verb + 1 + COORDINATED_WINDOW]
        for k, tok in enumerate(window):
            if tok == "and" and k + 1 < len(window):
                actions |= _action_at(toks, verb + 2 + k)
        rules.append(PolicyRule(sign, frozenset(actions), context - actions))
        i = verb + 1
    return tuple(rules)


def _first_content(toks: list[str], start: int) -> int:
    for i in range(start, len(toks)):
        tok = _bare(toks[i])
        if tok in _LEADS or tok in STOPWORDS or len(tok) <= 2:
            continue
        return i
    return -1


def _negated_action(toks: list[str], at: int, sign: int) -> list:
    j = _first_content(toks, at + 1)
    if j < 0 or _bare(toks[j]) in NEGATORS:
        return []
    return [(sign, _action_at(toks, j))]


@lru_cache(maxsize=4096)
def lesson_actions(directive: str, sign: int = 1) -> tuple[tuple[int, frozenset], ...]:
    """The actions a lesson tells the agent to take (+1) or not to take (-1): the
    verb opening each clause of its directive, and each word a negation governs
    ("skip authentication", "without asking the user to confirm")."""
    out = []
    for clause in re.split(r"[.;:!?\n]|,\s(?:and|then)\s", normalise(directive)):
        if _CONDITIONAL.search(clause) or _REPEAT.search(clause):
            continue
        toks = words(clause)
        i = _first_content(toks, 0)
        if i < 0:
            continue
        if _bare(toks[i]) in NEGATORS:
            out += _negated_action(toks, i, -sign)
        else:
            out.append((sign, _action_at(toks, i)))
        for k in range(i + 1, len(toks)):
            if _bare(toks[k]) in NEGATORS:
                out += _negated_action(toks, k, -sign)
        sign = 1  # a leading "avoid" governs the first clause only
    return tuple(out)


def policy_breach(
    directive: str, sign: int, lesson_words: frozenset, sentence: str
) -> PolicyRule | None:
    """The rule of a policy sentence a lesson breaks: it skips what the sentence
    requires, or does what it forbids, about something the sentence names."""
    actions = lesson_actions(directive, sign)
    for rule in policy_rules(sentence):
        # Skipping a required action is a strong sign; doing a forbidden verb
        # ("provide", "make") needs more of the sentence's subject to be about it.
        needed = 1 if rule.sign > 0 else 2
        for lesson_sign, action in actions:
            if action & rule.actions and lesson_sign == -rule.sign:
                if len(lesson_words & rule.context) >= needed:
                    return rule
    return None


def content_stems_of(text: str) -> frozenset:
    """Content words (stemmed), markers left out."""
    return _order_stems(normalise(text))
