"""Feedback as evidence: a person's correction, a monitor's alert or a failed test posted
about the run after it ended becomes a lesson about the step it concerns, citing the
feedback (provenance "feedback"). The correction's words are the lesson's substance;
only one run's ids, amounts and dates are taken out of the text (they stay in the
rationale)."""

import re

from learning.lessons import lesson_parse, run_specific_terms
from learning.reflectors.base import FeedbackView, Lesson

from .context import Context, strategy
from .parsing import Call, norm_value
from .signals import shape_key
from .text import stems

BASE = {"human": 0.8, "test": 0.75, "monitoring": 0.7, "production": 0.7}
_CORRECTION = re.compile(
    r"\b(?:wrong|incorrect|should(?:n't| not)? have|should be|instead|asked for|"
    r"wanted|expected|mistake|not what|failed|error|broke|regress|violat|missed|forgot)",
    re.I,
)
_WANTED = re.compile(
    r"\b(?:asked for|asked to|wanted|requested|expected|meant|needed|should have (?:been )?|"
    r"should be|was supposed to (?:be )?)\s+(?P<wanted>[^.;!?]+)",
    re.I,
)
# A failed test is named near the start of a correction; looking further made _TEST's
# backtracking quadratic on long messages (tests/security/test_redos.py: CAPPED).
TEST_SCAN = 2000
_PAST = re.compile(r"^\s*(?:the agent |it |you |agent )?\w+ed\b", re.I)
_TEST = re.compile(
    r"\b(test[\w:./-]*|[\w./-]*_test\w*)\b.{0,40}?\b(?:failed|failing|fails)\b", re.I
)


def _general(text: str) -> str:
    """The feedback text without one run's particulars."""
    out = " ".join((text or "").split())
    for term in run_specific_terms(out):
        out = out.replace(term, "")
    out = re.sub(r"\s+([,.;:])", r"\1", re.sub(r"\s{2,}", " ", out))
    out = re.sub(r"\(\s*\)|\[\s*\]", "", out)
    return out.strip(" ,;:-")


def _concerned_call(ctx: Context, text: str) -> Call | None:
    """The call the feedback speaks of: one whose tool, argument names or values it
    mentions (the last such), else the last call that changed something."""
    said = stems(text)
    lowered = text.lower()
    best = None
    for call in ctx.me.calls:
        named = call.tool.lower() in lowered or stems(call.tool) & said
        values = any(
            isinstance(v, str) and len(v) >= 3 and norm_value(v) in lowered
            for v in call.args.values()
        )
        fields = any(stems(k) & said for k in call.args)
        if named or values or (fields and call.tool in ctx.tools.consequential):
            best = call
    if best is not None:
        return best
    changed = [
        c for c in ctx.me.calls if c.tool in ctx.tools.consequential and not c.failed
    ]
    return changed[-1] if changed else None


def _directive(text: str) -> tuple[str, str]:
    """(polarity, directive) from a correction: what was wanted, set against what was
    done; a failed test to make pass; an instruction as given; else the correction
    applied as stated."""
    general = _general(text)
    test = _TEST.search(text[:TEST_SCAN])
    if test and not run_specific_terms(test.group(1)):
        return "do", f"make sure `{test.group(1)}` passes before finishing"
    wanted = _WANTED.search(general)
    if wanted:
        want = wanted.group("wanted").strip(" ,")
        done = general[: wanted.start()].strip(" ,;:-")
        done = re.sub(
            r"\b(?:but|while|whereas|the (?:customer|user|client)|they|he|she)\s*$",
            "",
            done,
            flags=re.I,
        ).strip(" ,;:-")
        if done:
            done = done[:1].lower() + done[1:]
            return (
                "do",
                f"match what was asked for ({want}) rather than what was done ({done})",
            )
        return "do", f"match what was asked for: {want}"
    if not _PAST.match(general) and not _CORRECTION.search(general[:12]):
        parsed = lesson_parse(general)
        if parsed.shape.directive:
            return parsed.shape.polarity, parsed.shape.directive
    return "do", f"apply this correction: {general}"


def _lesson(ctx: Context, item: FeedbackView) -> Lesson | None:
    text = (item.message or "").strip()
    if not text:
        return None
    dropped = ctx.run.success_score is not None and item.score < ctx.run.success_score
    if item.score >= 0.5 and not dropped and not _CORRECTION.search(text):
        return None  # praise or a note, not a correction
    call = _concerned_call(ctx, text)
    polarity, directive = _directive(text)
    who = f"{item.feedback_type} feedback" + (
        f" from {item.source}" if item.source else ""
    )
    when = f"calling `{call.tool}`" if call is not None else ""
    return strategy(
        key=f"feedback|{call.tool if call else ctx.run.task_type}|{shape_key(_general(text))[:60]}",
        polarity=polarity,
        when=when,
        directive=directive,
        why=f"{who} (score {item.score:.2f}): “{text[:300]}”",
        rationale=(
            f"{who}, score {item.score:.2f}"
            + (f", {item.created_at}" if item.created_at else "")
            + f": “{text[:500]}”"
            + (f" — about step {call.step} (`{call.tool}`)." if call else ".")
        ),
        steps=call.steps if call else [s.index for s in ctx.run.steps[-1:]],
        base=BASE.get(item.feedback_type, 0.6),
        provenance="feedback",
        root_cause=True,
    )


def feedback_lessons(ctx: Context) -> list[Lesson]:
    lessons = []
    for item in ctx.run.feedback:
        lesson = _lesson(ctx, item)
        if lesson is not None:
            lessons.append(lesson)
    return lessons
