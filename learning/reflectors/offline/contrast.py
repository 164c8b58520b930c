"""Lessons from contrast with successful runs: of the same task (which state-changing
call they all made and this run did not, which argument they agreed on and this run
got wrong — and where the right value came from —, which change none of them made),
and of the same task type (the call they make before a state-changing one)."""

import json
import re
from collections import Counter

from learning.reflectors.base import Lesson

from .context import Context, strategy
from .outcome import extra_call, missing_call
from .parsing import Call, Parsed, norm_value
from .text import code

MIN_TYPE_WINNERS = 3
TYPE_SHARE = 0.6


def _leaves(value, prefix: str) -> dict[str, str]:
    """Argument paths to comparable text; a list of records is compared as a set."""
    if isinstance(value, dict):
        out = {}
        for key, inner in value.items():
            out.update(_leaves(inner, f"{prefix}.{key}"))
        return out
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            out: dict[str, set] = {}
            for item in value:
                for path, text in _leaves(item, f"{prefix}[]").items():
                    out.setdefault(path, set()).add(text)
            return {p: json.dumps(sorted(v)) for p, v in out.items()}
        return {prefix: json.dumps(sorted(norm_value(v) for v in value))}
    return {prefix: norm_value(value)}


def _flat(call: Call) -> dict[str, str]:
    """The call's arguments as comparable paths (remembered on the call)."""
    cached = call.__dict__.get("_flat")
    if cached is None:
        cached = {}
        for key, value in call.args.items():
            cached.update(_leaves(value, key))
        call.__dict__["_flat"] = cached
    return cached


def _first_ok(parsed: Parsed, tool: str) -> Call | None:
    return next((c for c in parsed.calls if c.tool == tool and not c.failed), None)


def _mentions(text: str, value: str) -> bool:
    """The value appears in the text as a whole word or phrase ("2" in "exchange 2
    shirts", never in "A12")."""
    if value not in text:
        return False
    return re.search(rf"(?<![\w.]){re.escape(value)}(?![\w])", text) is not None


def _source(parsed: Parsed, call: Call, value_text: str) -> str:
    """Where a value came from before the call: "request" (the task or the user),
    a tool's name (an earlier result), or "" (nowhere: made up or computed)."""
    try:
        values = json.loads(value_text) if value_text.startswith("[") else [value_text]
    except ValueError:
        values = [value_text]
    values = [str(v) for v in values if isinstance(v, (str, int, float)) and str(v)]
    if not values or values in (["true"], ["false"], ["none"], ["null"]):
        return ""
    if all(_mentions(parsed.requested_text, v) for v in values):
        return "request"
    for earlier in parsed.calls:
        if earlier.step >= call.step or earlier.result is None:
            break
        text = earlier.result_text.lower()
        if all(_mentions(text, v) for v in values):
            return earlier.tool
    return ""


def _arg_directive(arg: str, win_src: str, my_src: str) -> str:
    """Where the value should come from, when the data says so: the task (and this run
    took it from a result instead), or a result (and this run's value came from
    nowhere); otherwise a check against the task."""
    name = code(arg)
    if win_src == "request" and my_src not in ("", "request"):
        return f"take {name} from what the task asks for, rather than from the `{my_src}` result"
    if win_src not in ("", "request") and my_src == "":
        return f"take {name} from the `{win_src}` result"
    return f"check {name} against what the task asks for"


def _agreed(calls: list[dict[str, str]]) -> dict[str, str]:
    first = calls[0]
    return {k: v for k, v in first.items() if all(c.get(k) == v for c in calls[1:])}


def _arg_lessons(
    ctx: Context, tool: str, winners: list[Parsed], mine: Call
) -> list[Lesson]:
    pairs = [(w, _first_ok(w, tool)) for w in winners]
    pairs = [(w, c) for w, c in pairs if c is not None]
    if not pairs:
        return []
    agreed = _agreed([_flat(c) for _w, c in pairs])
    my_flat = _flat(mine)
    lessons = []
    for path, want in agreed.items():
        got = my_flat.get(path)
        if got is None or got == want:
            continue  # the same value, or a field this call does not send at all
        arg = path.split(".")[0].replace("[]", "")
        win_src = _source(pairs[0][0], pairs[0][1], want)
        my_src = _source(ctx.me, mine, got) if got is not None else ""
        lessons.append(
            strategy(
                key=f"args|{tool}|{path}",
                when=f"before calling `{tool}`",
                directive=_arg_directive(arg, win_src, my_src),
                why=(
                    f"{len(pairs)} successful run(s) of the same task passed {path}={want[:60]}; "
                    f"this run passed {path}={(got or 'nothing')[:60]} (step {mine.step})"
                ),
                steps=mine.steps,
                base=0.65,
                consistency=len(pairs) / len(winners),
                runs=1 + len(pairs),
                provenance="contrast",
                related={w.run.id: c.steps for w, c in pairs},
                root_cause=True,
            )
        )
    return lessons[:2]  # the first disagreements; the rest usually follow from them


def _same_task(ctx: Context) -> list[Lesson]:
    winners = ctx.same_task_winners()
    if not ctx.failed or not winners:
        return []
    n = len(winners)
    changes = ctx.tools.changes
    won: Counter = Counter()
    for w in winners:
        won.update(
            {
                c.tool
                for c in w.calls
                if not c.failed and (c.tool in changes or not changes)
            }
        )
    mine = {c.tool: c for c in ctx.me.calls if not c.failed}
    lessons: list[Lesson] = []
    for tool, k in won.most_common():
        if 2 * k < n:
            continue
        related = {
            w.run.id: [c.step for c in w.calls if c.tool == tool] for w in winners
        }
        if tool not in mine:
            tried = next((c for c in ctx.me.calls if c.tool == tool), None)
            how = (
                f"tried it at step {tried.step} and failed"
                if tried
                else "never called it"
            )
            lessons.append(
                missing_call(
                    ctx,
                    tool,
                    why=f"{k} of {n} successful runs of the same task called `{tool}`; this run {how}",
                    steps=tried.steps
                    if tried
                    else [ctx.run.steps[-1].index]
                    if ctx.run.steps
                    else [],
                    base=0.7,
                    provenance="contrast",
                    related={r: s for r, s in related.items() if s},
                    consistency=k / n,
                )
            )
        elif tool in changes:
            lessons += _arg_lessons(ctx, tool, winners, mine[tool])
    for tool, call in mine.items():
        if tool in changes and won[tool] == 0:
            lessons.append(
                extra_call(
                    ctx,
                    call,
                    why=f"step {call.step}: none of the {n} successful runs of the same task called `{tool}`",
                    base=0.65,
                    provenance="contrast",
                    related={w.run.id: [] for w in winners},
                    wanted=[
                        t for t, k in won.most_common() if t in changes and 2 * k >= n
                    ],
                )
            )
    return lessons


def _task_type(ctx: Context) -> list[Lesson]:
    """A call that most successful runs of the task type make before a state-changing
    call, which this failed run made without it."""
    winners = ctx.winners()
    if not ctx.failed or len(winners) < MIN_TYPE_WINNERS:
        return []
    lessons = []
    for call in ctx.me.calls:
        if call.tool not in ctx.tools.changes:
            continue
        before_me = {
            c.tool for c in ctx.me.calls if c.step < call.step and not c.failed
        }
        usage: Counter = Counter()
        total = 0
        for w in winners:
            target = _first_ok(w, call.tool)
            if target is None:
                continue
            total += 1
            usage.update(
                {
                    c.tool
                    for c in w.calls
                    if c.step < target.step and not c.failed and c.tool != call.tool
                }
            )
        if total < MIN_TYPE_WINNERS:
            continue
        for tool, k in usage.most_common(2):
            if k / total < TYPE_SHARE or tool in before_me:
                continue
            lessons.append(
                strategy(
                    key=f"precede|{call.tool}|{tool}",
                    when=f"before calling `{call.tool}`",
                    directive=f"call `{tool}` first",
                    why=(
                        f"{k} of {total} successful runs of this task type called `{tool}` "
                        f"before `{call.tool}`; this run did not (step {call.step})"
                    ),
                    steps=call.steps,
                    base=0.5,
                    consistency=k / total,
                    runs=k,
                    provenance="contrast",
                )
            )
        break  # the first state-changing call is where the missing step belonged
    return lessons


MIN_SOURCE_WINNERS = 3
# From where a run of id characters starts: the look-aheads read each run once.
_ID = re.compile(r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[a-z])[\w-]{3,}")
SOURCE_SHARE = 0.7


def _source_of(parsed: Parsed, call: Call, path: str) -> str:
    """`_source` of one argument path, remembered on the parsed run (peers are parsed
    once and reused)."""
    cache = parsed.__dict__.setdefault("_arg_sources", {})
    key = (call.step, path)
    if key not in cache:
        value = _flat(call).get(path)
        cache[key] = _source(parsed, call, value) if value is not None else ""
    return cache[key]


def _made_up(parsed: Parsed, call: Call) -> list[str]:
    """Argument paths whose value is an id (letters and digits mixed) that no earlier
    step mentions: made up. (Other values — dates, amounts, names — are often
    reworded or computed, so "not seen" says nothing about them.)"""
    return [
        path
        for path, value in _flat(call).items()
        if _ID.search(value) and not _source_of(parsed, call, path)
    ]


def _winners_source(ctx: Context, tool: str, path: str) -> tuple[str, int, int]:
    counts: Counter = Counter()
    for w in ctx.winners():
        target = _first_ok(w, tool)
        if target is not None and path in _flat(target):
            counts[_source_of(w, target, path)] += 1
    if not counts:
        return "", 0, 0
    source, k = counts.most_common(1)[0]
    return source, k, sum(counts.values())


def _source_lessons(ctx: Context) -> list[Lesson]:
    """An id a state-changing call passed that no earlier step mentions (made up),
    where successful runs of the task type take it from a tool's result."""
    if not ctx.failed or len(ctx.winners()) < MIN_SOURCE_WINNERS:
        return []
    lessons = []
    for call in ctx.me.calls:
        if call.tool not in ctx.tools.changes:
            continue
        for path in _made_up(ctx.me, call):
            source, k, total = _winners_source(ctx, call.tool, path)
            if source in ("", "request") or total < MIN_SOURCE_WINNERS:
                continue
            if k / total < SOURCE_SHARE:
                continue
            arg = path.split(".")[0].replace("[]", "")
            lessons.append(
                strategy(
                    key=f"source|{call.tool}|{path}",
                    when=f"before calling `{call.tool}`",
                    directive=f"take {code(arg)} from the `{source}` result",
                    why=(
                        f"{k} of {total} successful runs of this task type took {path} "
                        f"from the `{source}` result; this run passed a value no earlier "
                        f"step mentions (step {call.step})"
                    ),
                    steps=call.steps,
                    base=0.6,
                    consistency=k / total,
                    runs=k,
                    provenance="contrast",
                    root_cause=True,
                )
            )
    return lessons[:2]


RARE_SHARE = 0.15
MIN_RARE_WINNERS = 5


def _no_calls(ctx: Context) -> list[Lesson]:
    """A failed run that called no tool, where most successful runs of the task type
    start with the same one."""
    winners = [w for w in ctx.winners() if w.calls]
    if not ctx.failed or ctx.me.calls or len(winners) < MIN_TYPE_WINNERS:
        return []
    first: Counter = Counter(w.calls[0].tool for w in winners)
    top = first.most_common(2)
    share = top[0][1] / len(ctx.winners())
    tools = [top[0][0]]
    if share < TYPE_SHARE and len(top) > 1:
        tools.append(top[1][0])
        share = (top[0][1] + top[1][1]) / len(ctx.winners())
    if share < TYPE_SHARE or not ctx.run.steps:
        return []
    said = " or ".join(f"`{t}`" for t in tools)
    return [
        strategy(
            key=f"nocall|{'|'.join(sorted(tools))}",
            when="a task of this kind starts",
            directive=f"call {said} before answering",
            why=(
                f"{round(share * 100)}% of {len(ctx.winners())} successful runs of this "
                f"task type began with {said}; this run answered without calling any tool"
            ),
            steps=[m.step for m in ctx.me.messages if m.role not in ("user",)][:2]
            + [ctx.run.steps[-1].index],
            base=0.6,
            consistency=share,
            runs=len(ctx.winners()),
            provenance="contrast",
            root_cause=True,
        )
    ]


def _rare_ending(ctx: Context) -> list[Lesson]:
    """A failed run that ended on a call (a hand-off, a final action) that successful
    runs of the task type rarely make."""
    winners = ctx.winners()
    if not ctx.failed or not ctx.me.calls or len(winners) < MIN_RARE_WINNERS:
        return []
    last = ctx.me.calls[-1]
    if last.failed or last.tool not in ctx.tools.ends:
        return []
    steps = {s.index for s in ctx.run.steps}
    if max(steps) not in last.steps:
        return []  # the run went on after it
    k = sum(any(c.tool == last.tool for c in w.calls) for w in winners)
    if k / len(winners) > RARE_SHARE:
        return []
    return [
        extra_call(
            ctx,
            last,
            why=(
                f"step {last.step}: the run ended on `{last.tool}`, which {k} of "
                f"{len(winners)} successful runs of this task type called"
            ),
            base=0.55,
            provenance="contrast",
            consistency=1 - k / len(winners),
        )
    ]


def contrast_lessons(ctx: Context) -> list[Lesson]:
    same = _same_task(ctx)
    lessons = same + _task_type(ctx) + _source_lessons(ctx) + _no_calls(ctx)
    if not any(lesson.key.startswith("extra|") for lesson in same):
        lessons += _rare_ending(ctx)
    return lessons
