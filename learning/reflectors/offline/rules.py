"""A namespace's own reflection rules: domain knowledge as data a user writes, never
engine code. The rule set is a JSON object:

```json
{"state_tools": ["book_reservation", "cancel_reservation"],
 "rules": [
   {"id": "payment-total", "on": "error", "tool": "book_reservation",
    "match": "payment amount does not add up",
    "when": "paying for a booking", "directive": "compute the total with `calculate` …",
    "why": "the payments must add up to the price", "polarity": "do"},
   {"id": "read-first", "on": "call", "tool": "cancel_reservation",
    "requires": "get_reservation_details", "directive": "…"}]}
```

- ``state_tools``: the tools that change state (added to what the data shows);
- an ``error`` rule fires on a failing call whose answer matches ``match`` (a regular
  expression, case-insensitive), for ``tool`` (a name, ``*`` or absent for any); its
  lesson replaces the general one for that error;
- a ``call`` rule fires when ``tool`` is called without a successful ``requires``
  call before it (``requires: "confirmation"`` means the user's explicit yes in their
  last message before the call).

``when``, ``directive``, ``why`` and ``polarity`` (``do``/``avoid``) are the lesson's
shape. `rules_check` says what is wrong with a rule set before it is stored.
"""

import re

from learning.lessons import POLARITIES
from learning.reflectors.base import Lesson

from .context import Context, strategy
from .parsing import Call

ON = ("error", "call")
_CONFIRM = re.compile(
    r"\b(?:yes|yeah|yep|confirm(?:ed)?|proceed|go ahead|please do|do it|sounds good|"
    r"that works|i agree|correct|okay|ok|sure)\b",
    re.I,
)


def _rule_problems(rule, where: str) -> list[str]:
    if not isinstance(rule, dict):
        return [f"{where}: must be an object"]
    problems = []
    if rule.get("on") not in ON:
        problems.append(f"{where}.on: must be one of {', '.join(ON)}")
    if not isinstance(rule.get("directive"), str) or not rule["directive"].strip():
        problems.append(f"{where}.directive: required text")
    if rule.get("polarity", "do") not in POLARITIES:
        problems.append(f"{where}.polarity: must be do or avoid")
    if rule.get("on") == "error":
        if not rule.get("match"):
            problems.append(f"{where}.match: required for an error rule")
        try:
            re.compile(str(rule.get("match") or ""))
        except re.error as exc:
            problems.append(f"{where}.match: not a regular expression ({exc})")
    if rule.get("on") == "call" and not (rule.get("tool") and rule.get("requires")):
        problems.append(f"{where}: a call rule needs tool and requires")
    return problems


def rules_check(data) -> list[str]:
    """Problems with a rule set, each naming the field ("rules.2.match: …")."""
    if not isinstance(data, dict):
        return ["rules: must be a JSON object"]
    problems = []
    tools = data.get("state_tools", [])
    if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
        problems.append("state_tools: must be a list of tool names")
    rules = data.get("rules", [])
    if not isinstance(rules, list):
        return problems + ["rules: must be a list"]
    for i, rule in enumerate(rules):
        problems += _rule_problems(rule, f"rules.{i}")
    return problems


def rules_state_tools(rules: dict) -> list[str]:
    tools = rules.get("state_tools") if isinstance(rules, dict) else None
    return [t for t in tools if isinstance(t, str)] if isinstance(tools, list) else []


def _rules(ctx: Context, on: str) -> list[tuple[int, dict]]:
    items = ctx.rules.get("rules") if isinstance(ctx.rules, dict) else None
    if not isinstance(items, list):
        return []
    return [
        (i, r) for i, r in enumerate(items) if isinstance(r, dict) and r.get("on") == on
    ]


def _applies(rule: dict, tool: str) -> bool:
    wanted = rule.get("tool")
    return not wanted or wanted == "*" or wanted == tool


def _lesson(
    rule: dict, index: int, *, steps: list[int], why: str, root: bool = False
) -> Lesson:
    polarity = rule.get("polarity") if rule.get("polarity") in POLARITIES else "do"
    return strategy(
        key=f"rule|{rule.get('id') or index}",
        polarity=polarity,
        when=str(rule.get("when") or ""),
        directive=str(rule["directive"]),
        why=str(rule.get("why") or why),
        rationale=f"Namespace rule {rule.get('id') or index}: {why}",
        steps=steps,
        base=float(rule.get("confidence") or 0.75),
        provenance="failure",
        root_cause=root,
    )


def _error_rules(ctx: Context, failing: list[Call]) -> list[Lesson]:
    lessons = []
    for index, rule in _rules(ctx, "error"):
        try:
            pattern = re.compile(str(rule.get("match") or ""), re.I)
        except re.error:
            continue
        hits = [
            c
            for c in failing
            if _applies(rule, c.tool)
            and pattern.search(c.error.message or c.result_text)
        ]
        if not hits or not str(rule.get("directive") or "").strip():
            continue
        ctx.covered.update(c.step for c in hits)
        first = hits[0]
        lessons.append(
            _lesson(
                rule,
                index,
                steps=[s for c in hits for s in c.steps],
                why=f"step {first.step}: `{first.tool}` answered “{first.error.message}”",
                root=ctx.failed and not _recovered(ctx, hits[-1]),
            )
        )
    return lessons


def _recovered(ctx: Context, call: Call) -> bool:
    """A later call of the same tool succeeded."""
    return any(
        c.step > call.step and c.tool == call.tool and not c.failed
        for c in ctx.me.calls
    )


def _confirmed(ctx: Context, call: Call) -> bool:
    said = [m for m in ctx.me.user_messages if m.step < call.step]
    return bool(said) and bool(_CONFIRM.search(said[-1].text))


def _call_rules(ctx: Context) -> list[Lesson]:
    lessons = []
    for index, rule in _rules(ctx, "call"):
        required = str(rule.get("requires") or "")
        if not required or not str(rule.get("directive") or "").strip():
            continue
        for call in ctx.me.calls:
            if not _applies(rule, call.tool):
                continue  # an attempt counts, failed or not: the rule is about asking
            if (
                rule.get("tool") in (None, "", "*")
                and call.tool not in ctx.tools.changes
            ):
                continue
            if required == "confirmation":
                if not ctx.me.messages or _confirmed(ctx, call):
                    continue
                why = f"step {call.step}: `{call.tool}` without the user's explicit yes before it"
            else:
                before = {
                    c.tool for c in ctx.me.calls if c.step < call.step and not c.failed
                }
                if required in before:
                    continue
                why = f"step {call.step}: `{call.tool}` without `{required}` before it"
            lessons.append(_lesson(rule, index, steps=call.steps, why=why, root=True))
            break
    return lessons


def rule_lessons(ctx: Context) -> list[Lesson]:
    if not ctx.rules:
        return []
    failing = [c for c in ctx.me.calls if c.failed]
    lessons = _error_rules(ctx, failing)
    if ctx.failed:
        lessons += _call_rules(ctx)
    return lessons
