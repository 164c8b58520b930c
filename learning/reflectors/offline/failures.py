"""Lessons from the run's own failing calls: what a rejected call needed (learned from
the retry that worked, or from what the error names), loops of the same failing call
with nothing changed in between, and suggestions an answer offered that the next call
ignored. Errors the run meant to provoke (reproducing the reported problem) and errors
it fixed by other means (a retest after an edit) teach nothing and give no lesson."""

import re

from learning.reflectors.base import Lesson

from .context import Context, strategy
from .parsing import Call, norm_value
from .signals import shape_key
from .text import (
    change_kind,
    code,
    implicated_args,
    names,
    quoted,
    stems,
    value_text,
)

_INTENT = re.compile(
    r"reproduc|expect(?:ed|ing)? (?:it |this |the \w+ )?to (?:fail|raise|error|crash)|"
    r"should (?:fail|raise|error)|see (?:if|whether) (?:it|we) (?:fails|get)|"
    r"confirm (?:the )?(?:bug|issue|error)|trigger (?:the )?(?:bug|error)",
    re.I,
)
# A change that uses a name nothing defines (a linter's or compiler's words for it).
_UNDEFINED = re.compile(
    r"undefined (?:name|variable|reference)|is not defined|undeclared identifier", re.I
)
# Where one shell command ends and the next begins: `echo … | base64 -d`.
_COMMAND_SEPARATOR = re.compile(r"\|\|?|&&|;")
FIX_DIRECTIVES = {
    "quotes": "pass {arg} without quotation marks",
    "case": "write {arg} with the capitalisation an earlier result uses",
    "indentation": "match the indentation of the surrounding lines in {arg}",
    "shorter": "pass only the name itself in {arg}, without extra words",
}


def _thought_before(ctx: Context, step: int) -> str:
    earlier = [t for t in ctx.me.thoughts if t.step < step]
    earlier += [m for m in ctx.me.messages if m.step < step and m.role == "assistant"]
    earlier.sort(key=lambda m: m.step)
    return " ".join(m.text for m in earlier[-2:])


def provoked(ctx: Context, call: Call) -> bool:
    """The run meant this error: its thought said it would reproduce the problem, or
    the error is the one the task reports."""
    if _INTENT.search(_thought_before(ctx, call.step)):
        return True
    said = stems(call.error.message)
    task = stems(ctx.run.task_description)
    return len(said) >= 3 and len(said & task) >= max(3, 0.6 * len(said))


def failing_program(call: Call) -> str:
    """The program that failed in a shell pipeline, when the error names a later one
    than the call's own (`echo … | base64 -d` answering "base64: invalid input" is a
    failure of `base64`, not of `echo`); the call's tool otherwise."""
    command = call.args.get("command") if list(call.args) == ["command"] else None
    if not isinstance(command, str):
        return call.tool
    segments = [seg.split() for seg in _COMMAND_SEPARATOR.split(command)]
    later = [words[0].rsplit("/", 1)[-1] for words in segments[1:] if words]
    message = call.error.message
    return next((p for p in later if p != call.tool and f"{p}:" in message), call.tool)


def _next_same_tool(ctx: Context, call: Call) -> Call | None:
    return next(
        (c for c in ctx.me.calls if c.step > call.step and c.tool == call.tool), None
    )


def _recovered(ctx: Context, call: Call) -> bool:
    """A later call of the same tool succeeded: the run got past this failure."""
    return any(
        c.step > call.step and c.tool == call.tool and not c.failed
        for c in ctx.me.calls
    )


def _fixed_elsewhere(ctx: Context, call: Call) -> bool:
    """The same call later succeeded after something else changed (a retest)."""
    return any(
        c.step > call.step and c.signature == call.signature and not c.failed
        for c in ctx.me.calls
    )


def _missed_known(ctx: Context, call: Call) -> bool:
    """A lookup of something the run had been told about that the tool does not
    know: a miss, not a made-up value."""
    if call.error.category not in ("not_found", "no_results"):
        return False
    values = [norm_value(v) for v in call.args.values() if isinstance(v, str)]
    return _seen_before(ctx, call, values)


def _arg_phrase(call: Call, keys: list[str]) -> str:
    if keys:
        return names(keys)
    if len(call.args) == 1:
        return code(next(iter(call.args)))
    return "its arguments"


def _directive(ctx: Context, call: Call, keys: list[str], tool: str) -> str:
    error = call.error
    args = _arg_phrase(call, keys)
    said = quoted(error.shape) if error.shape else "an error"
    if error.category == "syntax" and _UNDEFINED.search(error.message):
        return f"define or import every name {args} uses before sending it, since `{tool}` rejects a change with {said}"
    if error.category == "syntax":
        return f"check the syntax of {args} before sending it, since `{tool}` rejects a change with {said}"
    if error.category in ("not_found", "no_results"):
        values = [norm_value(call.args[k]) for k in keys or call.args if k in call.args]
        if values and not _seen_before(ctx, call, values):
            return f"take {args} from an earlier result instead of guessing, since an unknown value gets {said}"
        return f"check that {args} names something that exists, since `{tool}` answers {said} otherwise"
    if error.category == "timeout":
        return f"limit the call to the work it needs (fewer options, a smaller input) and give an interactive program its input up front, since `{tool}` was stopped with {said}"
    if list(call.args) == ["command"]:
        if error.category in ("exception", "exit"):
            return f"check the command before running it, since it failed with {said}"
        return f"check the command's arguments first, since a wrong value gets {said}"
    return f"check {args} first, since a wrong value is rejected with {said}"


def _seen_before(ctx: Context, call: Call, values: list[str]) -> bool:
    seen = "\n".join(
        [t for s, t in ctx.me.observations if s < call.step]
        + [ctx.run.task_description or ""]
        + [m.text for m in ctx.me.messages if m.step < call.step]
    ).lower()
    return all(v and v in seen for v in values)


def _calling(tool: str) -> str:
    """The situation of a failed call. A program run by its path in the working
    directory (`./rock`, `../bin/solve`) is one of that task's own files: no other
    task has it, so the lesson is about running such a program, with this one named
    as the example."""
    if tool.startswith(("./", "../")):
        return f"running a program of the task's own files (here `{tool}`)"
    return f"calling `{tool}`"


def _error_lessons(ctx: Context, failing: list[Call]) -> list[Lesson]:
    groups: dict[tuple[str, str], list[Call]] = {}
    for call in failing:
        groups.setdefault(
            (failing_program(call), shape_key(call.error.shape)), []
        ).append(call)
    lessons = []
    for (tool, shape), calls in groups.items():
        first = calls[0]
        retry = _next_same_tool(ctx, calls[-1])
        keys = implicated_args(first, first.error.message)
        if retry is not None and not retry.failed:
            changed = [
                k
                for k in first.args
                if norm_value(first.args.get(k)) != norm_value(retry.args.get(k))
            ]
            keys = [k for k in keys if k in changed] or changed[:2]
        recovered = retry is not None and not retry.failed
        if recovered and not ctx.failed:
            continue  # a successful run that recovered at once: nothing to prevent
        miss = first.error.category in ("not_found", "no_results")
        if tool not in ctx.tools.consequential and (
            (recovered and (miss or tool in ctx.tools.reads))
            or _missed_known(ctx, first)
        ):
            continue  # a lookup that missed: the agent looks elsewhere; no lesson in it
        times = f" {len(calls)} times" if len(calls) > 1 else ""
        lessons.append(
            strategy(
                key=f"error|{tool}|{shape}",
                when=_calling(tool),
                directive=_directive(ctx, first, keys, tool),
                why=(
                    f"step {first.step}: `{tool}` answered “{first.error.message}”{times}"
                    + (" and a retry with other values worked" if recovered else "")
                ),
                steps=[s for c in calls for s in c.steps],
                base=0.6 if recovered else 0.65,
                provenance="failure",
                root_cause=ctx.failed and not _recovered(ctx, calls[-1]),
            )
        )
    return lessons


def _fix_candidates(call: Call, retry: Call | None) -> list[tuple[str, str]]:
    out = []
    if retry is not None and not retry.failed:
        for key, value in call.args.items():
            if key in retry.args and value_text(value) != value_text(retry.args[key]):
                kind = change_kind(value, retry.args[key], call.error.suggestions)
                out.append((key, kind))
    for key, value in call.args.items():  # offered exactly, save for quotes
        offered = _match(value, call.error.suggestions)
        if offered and change_kind(value, offered) == "quotes":
            out.append((key, "quotes"))
    return [(key, kind) for key, kind in out if kind in FIX_DIRECTIVES]


def _fix_lessons(ctx: Context, failing: list[Call], covered: set) -> list[Lesson]:
    """A retry that worked after changing only the form of a value (quotes, case,
    indentation, extra words) says what the first call should have been."""
    lessons = []
    for call in failing:
        retry = _next_same_tool(ctx, call)
        for key, kind in _fix_candidates(call, retry)[:1]:
            covered.add(call.step)
            worked = retry is not None and not retry.failed
            lessons.append(
                strategy(
                    key=f"fix|{call.tool}|{key}|{kind}",
                    when=f"calling `{call.tool}`",
                    directive=FIX_DIRECTIVES[kind].format(arg=code(key)),
                    why=(
                        f"step {call.step}: `{call.tool}` answered “{call.error.message}”; "
                        f"the same value {_fix_said(kind)}"
                    ),
                    steps=call.steps + (retry.steps if worked else []),
                    base=0.7,
                    provenance="failure",
                    root_cause=ctx.failed and not _recovered(ctx, call),
                )
            )
    return lessons


def _match(value, suggestions) -> str:
    target = norm_value(value)
    return next((s for s in suggestions if norm_value(s) == target), "")


def _fix_said(kind: str) -> str:
    return {
        "quotes": "without quotation marks is what the tool knows",
        "case": "with other capitalisation worked",
        "indentation": "with the indentation fixed worked",
        "shorter": "without the extra words worked",
    }[kind]


def _loop_lessons(ctx: Context, failing: list[Call], covered: set) -> list[Lesson]:
    """The same failing call again, unchanged, with nothing between that could have
    changed the outcome."""
    lessons, done = [], set()
    calls = ctx.me.calls
    steps = {c.step for c in failing}
    for i, call in enumerate(calls):
        if call.step not in steps or call.signature in done:
            continue
        repeats, last = [call], i
        for j in range(i + 1, len(calls)):
            other = calls[j]
            if other.signature != call.signature:
                continue
            if not (
                other.failed
                and shape_key(other.error.shape) == shape_key(call.error.shape)
            ):
                break
            if not ctx.tools.inert_between(calls[last + 1 : j]):
                break
            repeats.append(other)
            last = j
        if len(repeats) < 2:
            continue
        done.add(call.signature)
        covered.update(c.step for c in repeats)
        shape = call.error.shape or "the same error"
        lessons.append(
            strategy(
                key=f"loop|{call.tool}|{shape_key(shape)}",
                polarity="avoid",
                when=f"`{call.tool}` answers {quoted(shape)}",
                directive=f"repeating the same `{call.tool}` call unchanged",
                why=(
                    f"steps {', '.join(str(c.step) for c in repeats)}: the same call "
                    f"{len(repeats)} times, the same answer each time"
                ),
                steps=[s for c in repeats for s in c.steps],
                base=0.7,
                provenance="failure",
                root_cause=ctx.failed and not _recovered(ctx, repeats[-1]),
            )
        )
    return lessons


MIN_CLOSE_STEMS = 2


def _names_what_was_tried(call: Call) -> bool:
    """One of the offered alternatives names what the call asked for: it holds every
    word of the value tried, or the value holds all of its words (two or more), or
    they share two thirds of the value's words. "Gator Country guitarist" offered
    'Gator Country' is close; "British physicist" offered 'J. J. Thomson' is not."""
    tried = [stems(v) for v in call.args.values() if isinstance(v, str)]
    for offered in call.error.suggestions:
        words = stems(offered)
        for value in tried:
            if not value or not words:
                continue
            shared = len(value & words)
            if (
                value <= words
                or (words <= value and len(words) >= MIN_CLOSE_STEMS)
                or shared >= max(MIN_CLOSE_STEMS, -(-2 * len(value) // 3))
            ):
                return True
    return False


def _suggestion_lessons(
    ctx: Context, failing: list[Call], covered: set
) -> list[Lesson]:
    """An answer that offered alternatives, and a next call (or none, in a failed
    run) that tried none of them — or tried the same value again."""
    lessons = []
    for call in failing:
        tried = {norm_value(v) for v in call.args.values()}
        offered = {norm_value(s) for s in call.error.suggestions} - tried
        if not offered or not _names_what_was_tried(call):
            continue  # no alternative names what was asked for: none was the answer
        retry = _next_same_tool(ctx, call)
        if retry is not None and (
            not retry.failed
            or any(norm_value(v) in offered for v in retry.args.values())
        ):
            continue
        if retry is None and not ctx.failed:
            continue
        shape = call.error.shape or "an error"
        covered.update(c.step for c in failing if c.tool == call.tool)
        lessons.append(
            strategy(
                key=f"suggest|{call.tool}|{shape_key(shape)}",
                when=f"`{call.tool}` answers {quoted(shape)} and lists alternatives",
                directive="retry with one of the listed alternatives, exactly as written",
                why=(
                    f"step {call.result_step}: `{call.tool}` offered "
                    f"{len(call.error.suggestions)} alternatives and "
                    + (
                        f"the next call (step {retry.step}) used none of them"
                        if retry
                        else "the run tried none of them"
                    )
                ),
                steps=call.steps + (retry.steps if retry else []),
                base=0.65,
                provenance="failure",
                root_cause=ctx.failed and not _recovered(ctx, call),
            )
        )
        break  # once per run: the same habit
    return lessons


# A miss or a refusal that one other call can lift (an archive unpacked, a file
# created, a session opened); an error in what was sent is not lifted that way.
PREREQUISITE_ERRORS = ("not_found", "denied")
_VALUE_WORD = re.compile(r"[\w-]{4,}")
# "strings: …: No such file" says "No such file"; the program is named beside it.
_PROGRAM_PREFIX = re.compile(r"^[\w.-]+: (?:…: )?")


def _value_words(call: Call) -> set[str]:
    return set(_VALUE_WORD.findall(_values_text(call))) - {call.tool.lower()}


def _values_text(call: Call) -> str:
    return " ".join(value_text(v) for v in call.args.values()).lower()


_EXTENSION = re.compile(r"\.([a-z][a-z0-9]{0,7})\b")


def _same_name_extension(call: Call, between: Call, shared: set[str]) -> str:
    """The extension of the file `between` worked on when it is the missing file's
    name with another extension (`unzip x.zip` before `strings x.img`), else ""."""
    missing, worked_on = _values_text(call), _values_text(between)
    for word in shared:
        before = {m.group(1) for m in _extension_after(word, missing)}
        for match in _extension_after(word, worked_on):
            if before and match.group(1) not in before:
                return match.group(1)
    return ""


def _extension_after(word: str, text: str):
    start = 0
    while (at := text.find(word, start)) >= 0:
        start = at + len(word)
        match = _EXTENSION.match(text, start)
        if match:
            yield match


def _prerequisite_lessons(ctx: Context) -> list[Lesson]:
    """A call that missed or was refused, then worked unchanged right after one other
    call on the same thing (`strings x.img` "No such file", `unzip x.zip`, `strings
    x.img` again): that call was what the first one needed."""
    calls = ctx.me.calls
    lessons, done = [], set()
    for i, call in enumerate(calls):
        if not call.failed or call.error.category not in PREREQUISITE_ERRORS:
            continue
        if call.signature in done or provoked(ctx, call):
            continue
        if i + 2 >= len(calls):
            continue
        between, again = calls[i + 1], calls[i + 2]
        if again.signature != call.signature or again.failed:
            continue
        if between.failed or between.tool == call.tool:
            continue
        shared = (_value_words(call) - {between.tool.lower()}) & _value_words(between)
        if not shared:
            continue  # it worked on something else: not shown to be the cause
        done.add(call.signature)
        shape = _PROGRAM_PREFIX.sub("", call.error.shape) or "an error"
        # "call `unzip` first" alone reads as a cure for any missing file; the file
        # it unpacked is named like the missing one, which is what to look for
        extension = _same_name_extension(call, between, shared)
        on = f" on the `.{extension}` file of the same name" if extension else ""
        lessons.append(
            strategy(
                key=f"prerequisite|{call.tool}|{shape_key(shape)}|{between.tool}",
                when=f"`{call.tool}` answers {quoted(shape)}",
                directive=f"call `{between.tool}`{on} first, then repeat the call",
                why=(
                    f"step {call.step}: `{call.tool}` answered “{call.error.message}”; "
                    f"the same call worked after `{between.tool}` (step {between.step})"
                ),
                steps=call.steps + between.steps + again.steps,
                base=0.6,
                provenance="failure",
            )
        )
    return lessons


REPEAT_MIN = 3


def _repeat_lessons(ctx: Context) -> list[Lesson]:
    """In a failed run, the same call made again and again, answered the same each
    time, with nothing between that could have changed the answer."""
    if not ctx.failed:
        return []
    calls = ctx.me.calls
    lessons, done = [], set()
    for i, call in enumerate(calls):
        if call.failed or call.signature in done or call.result is None:
            continue
        answer = norm_value(call.result_text)
        repeats, last = [call], i
        for j in range(i + 1, len(calls)):
            other = calls[j]
            if other.signature != call.signature:
                continue
            if other.failed or norm_value(other.result_text) != answer:
                break
            if not ctx.tools.inert_between(calls[last + 1 : j]) and any(
                c.signature != call.signature for c in calls[last + 1 : j]
            ):
                break
            repeats.append(other)
            last = j
        if len(repeats) < REPEAT_MIN:
            continue
        done.add(call.signature)
        lessons.append(
            strategy(
                key=f"repeat|{call.tool}",
                polarity="avoid",
                when=f"`{call.tool}` has already answered a call",
                directive=f"sending the identical `{call.tool}` call again instead of using its answer or changing the call",
                why=(
                    f"steps {', '.join(str(c.step) for c in repeats)}: the same call "
                    f"{len(repeats)} times, the same answer each time"
                ),
                steps=[s for c in repeats for s in c.steps],
                base=0.6,
                provenance="failure",
            )
        )
    return lessons


def failure_lessons(ctx: Context) -> list[Lesson]:
    repeats = _repeat_lessons(ctx) + _prerequisite_lessons(ctx)
    failing = [
        c
        for c in ctx.me.calls
        if c.failed
        and c.step not in ctx.covered
        and not provoked(ctx, c)
        and not _fixed_elsewhere(ctx, c)
    ]
    if not failing:
        return repeats
    covered: set = set()
    lessons = _fix_lessons(ctx, failing, covered)
    lessons += _loop_lessons(ctx, failing, covered)
    lessons += _suggestion_lessons(ctx, failing, covered)
    rest = [c for c in failing if c.step not in covered]
    return lessons + _error_lessons(ctx, rest) + repeats
