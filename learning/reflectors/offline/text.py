"""Wording shared by the analyses: names in backticks, argument lists, the question a
task asks, how one argument value differs from another. General words only: a
lesson's text names tools, fields and situations; one run's values go to its why."""

import json
import re
from typing import Any

from .parsing import Call, norm_value

_WORD = re.compile(r"[a-z][a-z0-9]+")
_STOP = {
    "the", "and", "for", "with", "not", "was", "are", "has", "have", "this", "that",
    "from", "but", "you", "your", "its", "any", "all", "can", "into", "out", "get",
    "set", "one", "per", "use", "may", "did", "does", "than", "been", "will", "new",
    "now", "error", "errors", "found", "invalid", "failed",
}  # fmt: skip
_AUX = (
    "is|are|was|were|do|does|did|can|could|has|have|had|will|would|should|"
    "am|shall|may|might|must"
)
_YES_NO = re.compile(rf"^\s*(?:{_AUX})\b", re.I)
# "Which of A and B …?", "… A or B?" — and no other question word after the "or".
# The "or" form ends the question: it is looked for in the question's tail only
# (CHOICE_TAIL), so a long question is not rescanned 80 characters from every "or".
_CHOICE = re.compile(r"\b(?:which|who|what)\s+of\b", re.I)
_CHOICE_OR = re.compile(
    r"\bor\b(?:(?!\b(?:what|which|who|where|when|how)\b)[^?]){0,80}\?\s*$", re.I
)
CHOICE_TAIL = 200
_WH = re.compile(
    r"\b([Hh]ow\s+(?:many|much|long|old|far|big|tall|often|large)|"
    rf"(?:[Ww]hat|[Ww]hich)\s+(?!(?:{_AUX}|the|a|an)\b)[a-z]+|"
    r"[Ww]ho|[Ww]hom|[Ww]hose|[Ww]here|[Ww]hen|[Ww]hy|[Ww]hat|[Ww]hich)\b"
)


def code(name: str) -> str:
    return f"`{name}`"


def names(items: list[str], limit: int = 3) -> str:
    """`a`, `a` and `b`, `a`, `b` and `c`."""
    shown = [code(i) for i in items[:limit]]
    if len(shown) <= 1:
        return "".join(shown)
    return ", ".join(shown[:-1]) + " and " + shown[-1]


def quoted(text: str) -> str:
    return f"“{text}”"


def words(text: str) -> set[str]:
    return {w for w in _WORD.findall((text or "").lower()) if w not in _STOP}


def stems(text: str) -> set[str]:
    """Word stems good enough to match `flights` with "flight", `payment_methods` with
    "payment"."""
    out = set()
    for word in words(text.replace("_", " ")):
        out.add(word[:5] if len(word) > 5 else word.rstrip("s"))
    return out


def leaf_keys(value: Any, prefix: str = "") -> list[str]:
    """Argument paths: `flights`, `flights[].date`, `payment_methods[].amount`."""
    out = []
    if isinstance(value, dict):
        for key, inner in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            out.append(path)
            out += leaf_keys(inner, path)
    elif isinstance(value, list):
        for item in value[:5]:
            for path in leaf_keys(item, f"{prefix}[]"):
                if path not in out:
                    out.append(path)
    return out


def implicated_args(call: Call, message: str) -> list[str]:
    """The top-level arguments of `call` the error message speaks of: by their name,
    the names of fields inside them, or the words of their value."""
    said = stems(message)
    found = []
    for key, value in call.args.items():
        paths = [key] + leaf_keys(value, key)
        named = any(stems(p.split(".")[-1].replace("[]", "")) & said for p in paths)
        # or its value's words: "gift_card_7" is what "gift card balance" is about
        valued = isinstance(value, str) and len(stems(value) & said) >= 2
        if named or valued:
            found.append(key)
    return found


def question_form(task: str) -> str:
    """The situation a question sets, in general terms, to read after "When …": "the
    question asks for yes or no", "… to choose between named options", "… asks “how
    many”", "… asks “what year”"; "" when the task is not a question."""
    text = " ".join((task or "").split())
    if not text.endswith("?"):
        return ""
    if _YES_NO.match(text):
        return "the question asks for yes or no"
    if _CHOICE.search(text) or _CHOICE_OR.search(text[-CHOICE_TAIL:]):
        return "the question asks to choose between named options"
    # The question word opening the question, else the last one (a "who" or "which"
    # earlier in the sentence is usually a relative pronoun: "a playwright who …").
    found = list(_WH.finditer(text))
    if not found:
        return ""
    match = found[0] if found[0].start() == 0 else found[-1]
    form = " ".join(match.group(1).lower().split())
    if form.split()[0] in ("what", "which") and " " in form:
        form = _head_noun_form(form.split()[0], text[match.start() :])
    return f"the question asks “{form}”"


# Words that end the noun phrase after "what"/"which": prepositions, pronouns,
# determiners and verbs. "what about his works" has no noun; "what public research university that
# …" is asking for a university.
_PHRASE_ENDS = frozenset(
    "about above after against among around as at before behind between by during "
    "for from in into like near of off on onto over per since through to toward "
    "towards under upon with within without that which who whom whose where when "
    "is are was were be been being am has have had do does did can could shall "
    "should will would may might must and or but nor so yet also both either "
    "neither not the a an this these those his her its their my our your".split()
)
MAX_PHRASE_WORDS = 3


def _head_noun_form(word: str, question: str) -> str:
    """`word` ("what"/"which") with the last word of the noun phrase after it, or alone
    when no noun follows."""
    head = ""
    for raw in question.split()[1 : 1 + MAX_PHRASE_WORDS]:
        bare = raw.strip(",.;:?!\"'“”‘’()")
        if not bare.isalpha() or not bare.islower() or bare in _PHRASE_ENDS:
            break
        head = bare
        if bare != raw:
            break  # punctuation ends the phrase
    return f"{word} {head}" if head else word


def humanize(tool: str) -> str:
    """`update_reservation_flights` -> "update reservation flights"."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", tool)
    return " ".join(re.split(r"[_.\-\s]+", text)).lower().strip()


def value_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def change_kind(before: Any, after: Any, suggestions: tuple = ()) -> str:
    """How a retried argument differs from the failed one: "suggestion" (it is one of
    the values the failure offered), "quotes", "case", "indentation", "shorter"
    (words dropped), "other"."""
    a, b = value_text(before), value_text(after)
    if suggestions and norm_value(b) in {norm_value(s) for s in suggestions}:
        if norm_value(a) == norm_value(b):
            return "quotes" if _quotes(a) != _quotes(b) else "suggestion"
        return "suggestion"
    if a.strip().strip("\"'`") == b.strip().strip("\"'`") and a.strip() != b.strip():
        return "quotes"
    if a.lower() == b.lower() and a != b:
        return "case"
    if [line.strip() for line in a.splitlines()] == [
        line.strip() for line in b.splitlines()
    ]:
        return "indentation"
    if len(norm_value(b)) >= 3 and norm_value(b) in norm_value(a):
        return "shorter"
    return "other"


def _quotes(text: str) -> int:
    return sum(text.count(q) for q in "\"'`")
