"""Lessons from what the run was judged against: a gold answer in its metrics (the
final answer incomplete, padded, of the wrong kind, or stated by no observation) and
the actions an evaluator expected (one left out, or a change made that was not asked
for). The situation is the task's own form (the kind of question it asks) or the tool
involved — never the task's words."""

import re

from learning.reflectors.base import Lesson

from .context import Context, strategy
from .parsing import Call
from .text import code, humanize, question_form

GOLD_KEYS = (
    "expected_answer",
    "gold_answer",
    "correct_answer",
    "ground_truth",
    "reference_answer",
    "expected_output",
)
FINAL_KEYS = ("final_answer", "predicted_answer", "prediction", "model_answer")
EXPECTED_ACTION_KEYS = ("expected_actions", "gold_actions", "reference_actions")
_TOKEN = re.compile(r"[a-z0-9]+")
_ARTICLES = {"the", "a", "an", "of", "and", "in", "on", "at", "to", "for"}
_YES_NO = {"yes", "no"}
_NUMBER_WORDS = {
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "hundred", "thousand", "million", "billion",
}  # fmt: skip


def _tokens(text: str) -> list[str]:
    """Words of an answer for comparison: lower case, articles dropped, a plural's
    final "s" dropped ("magazines" = "magazine")."""
    out = []
    for token in _TOKEN.findall(str(text).lower()):
        if token in _ARTICLES:
            continue
        out.append(token[:-1] if len(token) > 3 and token.endswith("s") else token)
    return out


def _numeric(tokens: list[str]) -> bool:
    return bool(tokens) and all(t.isdigit() or t in _NUMBER_WORDS for t in tokens)


def metric(metrics: dict, keys: tuple) -> object:
    for key in keys:
        value = metrics.get(key)
        if value not in (None, "", []):
            return value
    return None


def final_answer(ctx: Context) -> tuple[str, Call | None]:
    """The run's final answer and the call that gave it: the metrics' final answer, or
    the last call when it is a call that ends runs (learned from the data), made once,
    with one value."""
    calls = ctx.me.calls
    last = calls[-1] if calls else None
    given = metric(ctx.run.metrics, FINAL_KEYS)
    if given is not None:
        if last is not None and str(given) in [str(v) for v in last.args.values()]:
            return str(given), last
        return str(given), None
    if last is None or len(last.args) != 1 or last.tool not in ctx.tools.ends:
        return "", None
    if len(ctx.me.calls_of(last.tool)) > 1:
        return "", None  # an answer is given once; a tool called again is not one
    value = next(iter(last.args.values()))
    return (str(value), last) if isinstance(value, str) else ("", None)


def _relation(answer: list[str], gold: list[str]) -> str:
    """How a wrong answer relates to the gold one."""
    if not answer:
        return ""
    a, g = set(answer), set(gold)
    if a == g:
        return ""  # the same words: a grading detail, nothing to learn
    if g & _YES_NO and not a & _YES_NO:
        return "yes-no"
    if _numeric(gold) and not _numeric(answer):
        return "number"
    if _numeric(answer) and not _numeric(gold) and not any(t.isdigit() for t in gold):
        return "not-number"
    if a < g:
        return "incomplete"
    if g < a:
        return "padded"
    return ""


DIRECTIVES = {
    "yes-no": "answer {tool} with yes or no",
    "number": "answer {tool} with the number itself",
    "not-number": "answer {tool} with the name the question asks for, rather than a number or date",
    "incomplete": "give {tool} the complete name or phrase as the observation states it, rather than a part of it",
    "padded": "give {tool} only the value asked for, without added words",
    "unsupported": "call {tool} only with an answer an observation states, and search further when none does",
    "overlooked": "check which value in the observations meets every condition of the question before calling {tool}",
    "overlooked-choice": "compare what the observations say about each option on the point asked before calling {tool}",
}


def _supported(ctx: Context, answer: str, before: int | None) -> int | None:
    """The first observation step (before the answer) that states the answer."""
    wanted = " ".join(_tokens(answer))
    if not wanted:
        return None
    for step, text in ctx.me.observations:
        if before is not None and step >= before:
            break
        if wanted in " ".join(_tokens(text)):
            return step
    return None


# Situations that name no kind of question: a lesson for them would read the same for
# any question, so none is made (prefer no lesson to a generic one).
_ANY_QUESTION = frozenset(
    f"the question asks “{word}”" for word in ("what", "which", "whose", "whom")
)


# The reasoning before an answer says it was inferred, not read: "So the war … must
# be World War I." (No successful run of the development sets reasons so.)
_INFERRED = re.compile(
    r"\b(?:must be|must have been|probably|presumably|i guess|i assume|"
    r"i(?:'d| would) guess|might be|is likely|was likely)\b",
    re.I,
)


def _guessed(ctx: Context, answer_step: int | None) -> tuple[int, str] | None:
    """The thought just before the answer, when it infers the answer: (step, words)."""
    if answer_step is None:
        return None
    before = [t for t in ctx.me.thoughts if t.step < answer_step]
    if not before or answer_step - before[-1].step > 2:
        return None
    match = _INFERRED.search(before[-1].text)
    return (before[-1].step, match.group(0)) if match else None


def _answer_why(answer, gold, seen, relation, guess) -> str:
    why = f"the run answered “{answer[:80]}”"
    if gold is not None:
        why += f"; the expected answer was “{str(gold)[:80]}”"
    if seen is not None:
        why += f", which step {seen} had stated"
    elif relation == "unsupported" and guess:
        why += f"; step {guess[0]} inferred it (“{guess[1]}”) where no observation states it"
    elif relation == "unsupported":
        why += "; no observation states that answer"
    return why


def _answer_lessons(ctx: Context) -> list[Lesson]:
    gold = metric(ctx.run.metrics, GOLD_KEYS)
    if not ctx.failed or (gold is None and metric(ctx.run.metrics, FINAL_KEYS) is None):
        return []  # without a judged answer, what the run said last is not its answer
    answer, call = final_answer(ctx)
    if not answer:
        return []
    tool = code(call.tool) if call is not None else "the final answer"
    at = call.step if call is not None else None
    relation = _relation(_tokens(answer), _tokens(gold)) if gold is not None else ""
    seen = _supported(ctx, str(gold), at) if gold is not None else None
    supported = _supported(ctx, answer, at) is not None or (
        " ".join(_tokens(answer)) in " ".join(_tokens(ctx.run.task_description))
    )
    form = question_form(ctx.run.task_description)
    if form in _ANY_QUESTION:
        return []  # "when the question asks “what”" is every question: no lesson
    if not relation and not supported:
        relation = "unsupported"
    if not relation and seen is not None and not set(_tokens(str(gold))) <= _YES_NO:
        relation = "overlooked-choice" if "choose" in form else "overlooked"
    guess = _guessed(ctx, at)
    if not relation and guess:
        relation = "unsupported"  # mentioned by an observation, but not as the answer
    if not relation:
        return []
    inferred = guess[0] if guess and supported else None
    steps = [s for s in (at, seen, inferred) if s is not None]
    why = _answer_why(answer, gold, seen, relation, guess if supported else None)
    return [
        strategy(
            key=f"answer|{relation}|{form}",
            when=form,
            directive=DIRECTIVES[relation].format(tool=tool),
            why=why,
            steps=steps or [s.index for s in ctx.run.steps[-1:]],
            base=0.6 if gold is not None else 0.5,
            provenance="failure",
            root_cause=True,
        )
    ]


def _expected(ctx: Context) -> list[str]:
    raw = metric(ctx.run.metrics, EXPECTED_ACTION_KEYS)
    if not isinstance(raw, list):
        return []
    out = []
    for item in raw:
        name = item.get("name") if isinstance(item, dict) else item
        if isinstance(name, str) and name:
            out.append(name)
    return out


def missing_call(
    ctx: Context,
    tool: str,
    *,
    why: str,
    steps,
    base,
    provenance,
    related=None,
    consistency=1.0,
) -> Lesson:
    """The lesson for a call the task needed and the run never made (one key for
    every source that shows it: the evaluator's expected actions, successful runs)."""
    first_change = next((c for c in ctx.me.calls if c.tool in ctx.tools.changes), None)
    if tool in ctx.tools.changes or tool not in ctx.tools.reads:
        when = f"the task asks to {humanize(tool)}"
        directive = f"call `{tool}` before finishing"
    elif first_change is not None:
        when = f"before calling `{first_change.tool}`"
        directive = f"call `{tool}` first"
    else:
        when = ""
        directive = f"call `{tool}` before answering"
    return strategy(
        key=f"missing|{tool}",
        when=when,
        directive=directive,
        why=why,
        steps=steps,
        base=base,
        provenance=provenance,
        related=related,
        consistency=consistency,
        root_cause=True,
    )


def extra_call(
    ctx: Context,
    call: Call,
    *,
    why: str,
    base,
    provenance,
    related=None,
    consistency=1.0,
    wanted=(),
) -> Lesson:
    """The lesson for a state-changing call the task did not want. When the evidence
    shows which change the task did want (`wanted`: the evaluator's expected changes,
    or what successful runs of the same task changed), the lesson is bound to that
    situation ("When the task asks to X, do not call `Y`"); otherwise it asks to check
    the call against the task and the rules."""
    instead = next((tool for tool in wanted if tool != call.tool), None)
    if instead is not None:
        return strategy(
            key=f"extra|{call.tool}|{instead}",
            when=f"the task asks to {humanize(instead)}",
            directive=f"call `{call.tool}`",
            polarity="avoid",
            why=why,
            steps=call.steps,
            base=base,
            provenance=provenance,
            related=related,
            consistency=consistency,
            root_cause=True,
        )
    return strategy(
        key=f"extra|{call.tool}",
        when=f"before calling `{call.tool}`",
        directive="check that the task asks for this step and the rules allow it",
        why=why,
        steps=call.steps,
        base=base,
        provenance=provenance,
        related=related,
        consistency=consistency,
        root_cause=True,
    )


def _action_lessons(ctx: Context) -> list[Lesson]:
    expected = _expected(ctx)
    if not ctx.failed or not expected:
        return []
    done = {c.tool for c in ctx.me.calls if not c.failed}
    tried = {c.tool: c for c in ctx.me.calls}
    lessons = []
    seen = ctx.me.tools().union(*(p.tools() for p in ctx.peers))
    for tool in dict.fromkeys(expected):
        if tool in done:
            continue
        if tool in seen and tool not in ctx.tools.consequential:
            continue  # a lookup the evaluator listed: its absence is not the failure
        attempt = tried.get(tool)
        how = (
            f"tried it at step {attempt.step} and it failed"
            if attempt
            else "never called it"
        )
        lessons.append(
            missing_call(
                ctx,
                tool,
                why=f"the evaluator expected `{tool}`; the run {how}",
                steps=attempt.steps if attempt else [c.step for c in ctx.me.calls[-1:]],
                base=0.65,
                provenance="failure",
            )
        )
    for call in ctx.me.calls:
        if call.failed or call.tool in expected or call.tool not in ctx.tools.changes:
            continue
        lessons.append(
            extra_call(
                ctx,
                call,
                why=f"step {call.step}: `{call.tool}` changed state the evaluator did not expect to change",
                base=0.6,
                provenance="failure",
                # the changes the evaluator wanted: known changes, and calls no run
                # made (what a change the runs never made does is unknown)
                wanted=[t for t in expected if t in ctx.tools.changes or t not in seen],
            )
        )
    return lessons


def outcome_lessons(ctx: Context) -> list[Lesson]:
    return _answer_lessons(ctx) + _action_lessons(ctx)
