"""The lesson shape: one structure for every strategy-like lesson, from reflection to
recall, so a lesson reaches the agent with the meaning a reviewer approved.

A lesson is a directive with an explicit polarity:

- ``polarity``: ``do`` (follow the directive) or ``avoid`` (don't);
- ``when``: the situation it applies to, in general terms ("" = always), written so it
  reads after "When …" ("the user asks to change a reservation's flights");
- ``directive``: what to do, or what to avoid, *without* a negation of its own: an
  imperative ("check the seat map before calling `update_reservation_flights`") or,
  for a described pattern, a gerund ("cancelling a reservation without checking its
  fare rules");
- ``why``: the reason, from the evidence.

Where a lesson came from (a success, a failure, a contrast of both, feedback, a reviewer,
an agent) is provenance, never polarity: a lesson learned from a failure is usually
advice to *do* something. ``lesson_render`` is the only place that turns the structure
into text (candidates' content, recall lines, console previews), and ``lesson_parse`` is
the only place that reads structure out of free text (agent proposals, hand-written
strategies, migrated rows) — its result says it was classified, so the console can show
it for a reviewer to correct.

Also here, because every stage needs the same answer: which words of a lesson are bound
to one run (ids, amounts, dates …: ``run_specific_terms``), and how much confidence a
lesson earns from its evidence (``evidence_confidence``).
"""

import math
import re
from dataclasses import dataclass

DO = "do"
AVOID = "avoid"
POLARITIES = (DO, AVOID)

# Provenance: where a lesson came from (kept apart from polarity).
PROVENANCES = (
    "success",
    "failure",
    "contrast",
    "feedback",
    "reviewer",
    "agent",
    "batch",
)

# A negation that opens a directive, longest first; what follows is the directive.
_LEADING_NEGATION = re.compile(
    r"^(?:please\s+)?(?:do\s+not|don['’]t|never\s+ever|never|avoid|stop|refrain\s+from|"
    r"no\s+longer|you\s+should\s+not|you\s+shouldn['’]t|should\s+not|shouldn['’]t|"
    r"must\s+not|mustn['’]t|do\s+n[o']t)\b[\s,:]*",
    re.I,
)
# "When X, Y" / "If X, Y" / "Whenever X: Y" — the situation and the directive.
# The situation starts and ends with a word (a `\s+`, a lazy `[^,:;]` that may hold
# spaces and a `\s*` split one run of spaces every way: cubic on "when" + spaces).
_SITUATION = re.compile(
    r"^(?P<lead>when|whenever|if|once|while|after|in case|for)\s++"
    r"(?P<when>[^,:;]{3,200}?)(?<!\s)\s*+[,:;]\s++(?P<rest>\S.*)$",
    re.I | re.S,
)
_SUBORDINATORS = (
    "when ",
    "whenever ",
    "if ",
    "once ",
    "while ",
    "after ",
    "before ",
    "unless ",
    "in case ",
    "for ",
    "during ",
    "on ",
)
_PATTERN_GERUND = re.compile(r"^[a-z]+ing\b", re.I)
# Gerunds that open advice rather than describe a pattern ("Using X, do Y").
_ADVICE_GERUNDS = {"using", "assuming", "considering", "following", "given", "during"}
_ENDS = ".!;:,"


@dataclass(frozen=True)
class LessonShape:
    polarity: str = DO
    when: str = ""
    directive: str = ""
    why: str = ""


@dataclass(frozen=True)
class ParsedLesson:
    """The structure read from free text; `classified` says it was inferred (the
    console shows it so a reviewer can correct it)."""

    shape: LessonShape
    classified: bool = True


def _clean(text: str) -> str:
    return " ".join((text or "").split()).strip()


def _lower_first(text: str) -> str:
    if not text:
        return text
    head = text.split(" ", 1)[0]
    # keep code, acronyms and names as they are: `calculate`, API, ID, O'Brien
    if head[:1] in "`'\"" or (len(head) > 1 and head[1:2].isupper()):
        return text
    return text[:1].lower() + text[1:]


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _strip_end(text: str) -> str:
    return _clean(text).rstrip(_ENDS + " ")


def is_gerund_phrase(directive: str) -> bool:
    """A described pattern ("cancelling a reservation without …") rather than an
    imperative ("cancel …")."""
    first = (directive or "").split(" ", 1)[0].lower()
    if not _PATTERN_GERUND.match(first):
        return False
    # "Using the search tool, look up …" opens advice; "Using the same query again"
    # describes a pattern.
    return not (first in _ADVICE_GERUNDS and "," in directive)


def situation_text(when: str) -> str:
    """`when` as the opening of a sentence: "When the user …", "Before calling …"."""
    when = _strip_end(when)
    if not when:
        return ""
    if when.lower().startswith(_SUBORDINATORS):
        return _upper_first(when)
    return "When " + _lower_first(when)


def directive_text(polarity: str, directive: str) -> str:
    """The directive as a sentence body, with exactly the negation its polarity says."""
    directive = _strip_end(directive)
    if not directive:
        return ""
    if polarity == AVOID:
        if is_gerund_phrase(directive):
            return "avoid " + _lower_first(directive)
        return "do not " + _lower_first(directive)
    return _lower_first(directive)


def lesson_render(
    *, polarity: str, when: str = "", directive: str, why: str = "", with_why=False
) -> str:
    """The one rendering of a lesson as text. `why` is added as a second sentence
    only when asked (recall leaves it out when the budget is tight)."""
    body = directive_text(polarity, directive)
    opening = situation_text(when)
    sentence = f"{opening}, {body}" if opening else body
    sentence = _upper_first(sentence) + "." if sentence else ""
    why = _strip_end(why)
    if with_why and why:
        sentence += f" Why: {_lower_first(why)}."
    return sentence


def lesson_parse(text: str, *, kind: str = "") -> ParsedLesson:
    """Structure from free text. A leading negation ("Do not …", "Never …", "Avoid …")
    makes it `avoid` and is removed from the directive; a harmful pattern described as
    an activity ("Cancelling without checking the fare rules") is `avoid`; anything
    else — advice, including advice learned from a failure ("Before calling X, compute
    …") — is `do`. A leading "When/If …," becomes the situation."""
    text = _strip_end(text)
    when = ""
    match = _SITUATION.match(text)
    if match and not _LEADING_NEGATION.match(text):
        lead = match.group("lead").lower()
        when = f"{lead} {match.group('when')}" if lead not in ("when",) else ""
        when = when or match.group("when")
        text = match.group("rest")
    polarity = DO
    negation = _LEADING_NEGATION.match(text)
    if negation:
        polarity = AVOID
        text = text[negation.end() :]
    elif kind == "strategy_harmful" and is_gerund_phrase(text):
        polarity = AVOID
    return ParsedLesson(
        shape=LessonShape(polarity=polarity, when=when, directive=_lower_first(text)),
        classified=True,
    )


def shape_or_parse(
    *,
    content: str,
    kind: str = "",
    polarity: str = "",
    when: str = "",
    directive: str = "",
    why: str = "",
) -> tuple[LessonShape, bool]:
    """The structure given explicitly, or read from `content`; and whether it was
    classified (inferred) rather than stated."""
    if directive and polarity in POLARITIES:
        return LessonShape(
            polarity, _strip_end(when), _strip_end(directive), why
        ), False
    parsed = lesson_parse(directive or content, kind=kind)
    shape = parsed.shape
    if polarity in POLARITIES:
        shape = LessonShape(polarity, shape.when, shape.directive, shape.why)
    if when:
        shape = LessonShape(
            shape.polarity, _strip_end(when), shape.directive, shape.why
        )
    return LessonShape(
        shape.polarity, shape.when, shape.directive, why
    ), polarity not in POLARITIES


class LessonInvalid(ValueError):
    """A lesson that cannot be stored; `field` names the offending part."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def lesson_fields(
    *,
    kind: str,
    content: str = "",
    polarity: str = "",
    when: str = "",
    directive: str = "",
    why: str = "",
) -> dict:
    """The fields a strategy-like lesson is stored with — polarity, when, directive,
    why, `shape_classified` and `content`, its rendering — from the shape as stated or
    as read from `content`. The one place a lesson's stored text is made: candidates
    (created or edited) and playbook strategies (added or edited) all come here."""
    from learning.limits import MAX_LESSON_PART, MAX_LESSON_TEXT

    if polarity and polarity not in POLARITIES:
        raise LessonInvalid(
            "polarity", f"unknown polarity {polarity!r}; use 'do' or 'avoid'."
        )
    shape, classified = shape_or_parse(
        content=content,
        kind=kind,
        polarity=polarity,
        when=when,
        directive=directive,
        why=why,
    )
    if not shape.directive:
        raise LessonInvalid("directive", "a lesson needs a directive (or content).")
    for name, value in (("when", shape.when), ("why", shape.why)):
        if len(value) > MAX_LESSON_PART:
            raise LessonInvalid(
                name, f"{name} must be at most {MAX_LESSON_PART} characters."
            )
    rendered = lesson_render(
        polarity=shape.polarity, when=shape.when, directive=shape.directive
    )
    if len(rendered) > MAX_LESSON_TEXT:
        raise LessonInvalid(
            "content", f"a lesson must be at most {MAX_LESSON_TEXT} characters."
        )
    return {
        "content": rendered,
        "polarity": shape.polarity,
        "when": shape.when,
        "directive": shape.directive,
        "why": shape.why,
        "shape_classified": classified,
    }


# --- words bound to one run ----------------------------------------------------------

# Tried once per run of id characters, from where the run starts, skipping to its first
# possible start: the `term`. (Tried from every start, each "-" of "a-a-a-…" began a
# look-ahead over the rest of the run: quadratic. A later start can only succeed where
# the first one does, so nothing is lost.)
_ID_LIKE = re.compile(
    r"(?<![A-Za-z0-9_#-])(?:(?<![\w`])(?=[A-Za-z0-9])|(?:[A-Za-z0-9_]|[#-](?![A-Za-z0-9]))*+[#-])"
    r"(?P<term>(?=[A-Za-z0-9_#-]*\d)(?=[A-Za-z0-9_#-]*[A-Za-z])[A-Za-z0-9][A-Za-z0-9_#-]{4,}"
    r"(?![\w`]))"
)
# Digits before the decimal point and the local part of an address are bounded: from
# every start of "1,1,1,…" or "a.a.a.…" an unbounded run was rescanned (quadratic).
_AMOUNT = re.compile(
    r"(?:[$€£]\s?\d[\d,]*(?:\.\d+)?|\b\d[\d,]{0,30}\.\d{2}\b|\b\d{3,}\b)"
)
_DATE = re.compile(
    r"\b(?:\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4}|"
    r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.? \d{1,2}(?:st|nd|rd|th)?)\b",
    re.I,
)
_EMAIL = re.compile(r"\b[\w.+-]{1,64}+@[\w-]+\.[\w.]+\b")
_CODE_SPAN = re.compile(r"`[^`]{1,80}`")


def run_specific_terms(text: str) -> list[str]:
    """Words in a lesson that belong to one run: ids (letters and digits mixed, such as
    GV1N64, credit_card_3563913, #W2378156), amounts, dates and e-mail addresses.
    Names in backticks (tools, fields) are the lesson's subject and never count."""
    body = _CODE_SPAN.sub(" ", text or "")
    found: list[str] = []
    for pattern in (_EMAIL, _DATE, _ID_LIKE, _AMOUNT):
        for match in pattern.finditer(body):
            term = _term(match)
            if term not in found:
                found.append(term)
        body = pattern.sub(_blank_term, body)
    return found


def _term(match: re.Match) -> str:
    return match.group("term") if "term" in match.re.groupindex else match.group(0)


def _blank_term(match: re.Match) -> str:
    """The match with its term blanked (what comes before the term stays)."""
    start = match.start("term") if "term" in match.re.groupindex else match.start()
    return match.group(0)[: start - match.start()] + " "


# --- confidence from evidence --------------------------------------------------------


def evidence_confidence(
    *, base: float, runs: int, consistency: float = 1.0, cap: float = 0.95
) -> float:
    """One rule for how much a lesson's evidence is worth: `base` for one run, growing
    with the log of the number of runs that show it, scaled by how consistent they are
    (the share of comparable runs that agree), never past `cap`."""
    runs = max(int(runs), 1)
    consistency = min(max(float(consistency), 0.0), 1.0)
    grown = base + (cap - base) * (1 - 1 / (1 + 0.35 * math.log(runs)))
    return round(min(cap, base + (grown - base) * consistency), 3)
