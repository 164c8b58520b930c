"""Conflict audit: does a candidate contradict curated knowledge, a pending candidate
or the agent's own policy? The reading is `learning.text.contradiction` (the same
situation and subject with the opposite polarity, or the same decision with a
different value); this module picks what to compare and says it in plain words:
"Strategy #12 says to confirm with the user before booking; this says to book without
asking." """

from learning.lessons import AVOID, is_gerund_phrase, situation_text
from learning.text.analysis import sentences
from learning.text.contradiction import (
    Contradiction,
    LessonText,
    advice_text,
    lesson_contradiction,
    policy_contradiction,
    text_analyses,
)
from learning.text.readings import is_narration

COMMON_MIN_ITEMS = 8
COMMON_SHARE = 0.3
PHRASE_CHARS = 160


def scope_common_words(texts: list[str]) -> frozenset:
    """Subject words in more than COMMON_SHARE of the compared texts: in a scope of
    generated lessons ("the evaluator expected …") they are template, not topic."""
    if len(texts) < COMMON_MIN_ITEMS:
        return frozenset()
    counts: dict[str, int] = {}
    for text in texts:
        for word in frozenset().union(*(a.subject for a in text_analyses(text, 1))):
            counts[word] = counts.get(word, 0) + 1
    return frozenset(w for w, n in counts.items() if n / len(texts) > COMMON_SHARE)


def _clip(text: str, limit: int = PHRASE_CHARS) -> str:
    text = " ".join((text or "").split()).rstrip(" .;:,")
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text and not text[1:2].isupper() else text


def lesson_says(lesson: LessonText, statement: str = "") -> str:
    """What a lesson tells the agent, after "says": from its shape ("to call
    `get_reservation_details` before cancelling", "not to retry …", "to avoid
    cancelling without …") or, without one, the sentence that disagrees, quoted."""
    if lesson.shaped:
        clauses = [c for c in sentences(lesson.directive) if not is_narration(c)]
        directive = _lower_first(_clip(clauses[0] if clauses else lesson.directive))
        if lesson.polarity == AVOID:
            body = (
                f"to avoid {directive}"
                if is_gerund_phrase(directive)
                else f"not to {directive}"
            )
        else:
            body = f"to {directive}"
        situation = situation_text(lesson.when)
        return f"{body} {_lower_first(situation)}" if situation else body
    return f"“{_clip(statement or advice_text(lesson) or lesson.text)}”"


def _suffix(found: Contradiction) -> str:
    return "" if found.kind in ("polarity", "fact") else f" — {found.detail}"


def _sentence(label: str) -> str:
    return label[:1].upper() + label[1:]


def conflict_message(
    *, label: str, found: Contradiction, mine: LessonText, theirs: LessonText
) -> tuple[str, str, str]:
    """The finding's message and what each side says (kept for the mirrored finding
    on a pending candidate)."""
    if found.kind == "fact":
        this_says = f"{found.category} {_clip(found.my_value, 80)}"
        other_says = (
            f"{found.entity.upper()} has {found.category} "
            f"{_clip(found.their_value, 80)}"
        )
        message = f"{_sentence(label)} says {other_says}; this says {this_says}."
        return message, this_says, other_says
    this_says = lesson_says(mine, found.mine)
    other_says = lesson_says(theirs, found.theirs)
    message = f"{_sentence(label)} says {other_says}; this says {this_says}"
    return message + _suffix(found) + ".", this_says, other_says


def conflict_findings(
    *, lesson: LessonText, items: list, severity: str = "warn"
) -> list[dict]:
    """One finding per contradicted item (a reviewer decides, with both texts side by
    side); `severity` block for the agent's policy."""
    common = scope_common_words([item.text for item in items])
    findings = []
    for item in items:
        if item.type == "policy":
            found = policy_contradiction(lesson, item.text, common=common)
        else:
            found = lesson_contradiction(lesson, item.lesson, common=common)
        if not found:
            continue
        message, this_says, other_says = conflict_message(
            label=item.label, found=found, mine=lesson, theirs=item.lesson
        )
        related = item.related()
        if item.type == "policy":
            related["text"] = found.theirs[:500]  # the policy sentence itself
        findings.append(
            {
                "severity": severity,
                "message": message,
                "related": [related],
                "kind": found.kind,
                "this_says": this_says,
                "other_says": other_says,
                # the difference as the other side reads it (for the mirrored finding)
                "mirror_suffix": _suffix(found.swapped()),
            }
        )
    return findings
