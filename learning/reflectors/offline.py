"""The offline reflector: a deterministic analysis of a run's steps, and a contrast with
other runs of the same task and task type. No network, same input → same lessons.

What it looks for:
- tool calls answered with an error (``Error: …`` observations or an error result);
- the same call repeated (loops), above all after it failed;
- consequential (write) calls without the user's explicit confirmation, or without the
  lookup that precedes them in this run's own data or in successful peers;
- contrast with successful runs of the same task: write calls or arguments they used
  that this run did not, or writes none of them made;
- a user who had to correct the agent; a run that never called a tool;
- user preferences ("I prefer", "always", "never", "please use" …) and durable facts
  stated by tool observations (membership level, a reservation's cabin);
- tool sequences that recur across successful runs of the task type (procedures).
"""

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from learning.reflectors.base import (
    PROMPT_VERSION,
    Lesson,
    ReflectionResult,
    RunView,
    parse_call,
)

WRITE_PREFIXES = (
    "book_",
    "update_",
    "cancel_",
    "send_",
    "delete_",
    "create_",
    "modify_",
    "remove_",
    "add_",
    "set_",
    "exchange_",
    "return_",
    "refund_",
)
HANDOFF_PREFIXES = ("transfer_", "escalate_", "handoff_")
LOOKUP_PREFIXES = ("get_", "search_", "list_", "find_", "lookup_", "read_", "fetch_")
NEUTRAL_TOOLS = {"think", "calculate"}
CONFIRM = re.compile(
    r"\b(yes|yeah|yep|confirm(ed)?|proceed|go ahead|please do|do it|sounds good|that works|"
    r"i agree|correct|okay|ok|sure)\b",
    re.I,
)
PREFERENCE = re.compile(
    r"\b(i prefer|i'd prefer|i would prefer|i'd rather|i would rather|always|never|"
    r"please use|i want to use|i'd like to use|i would like to use|i don't want|"
    r"i do not want)\b",
    re.I,
)
CORRECTION = re.compile(
    r"(misunderstanding|confusion|mix-up|mixup|that's not what|that is not what|not what i|"
    r"i said|i already (said|told)|that's wrong|that is wrong|incorrect|not correct)",
    re.I,
)
ALL_OF_THEM = re.compile(
    r"\b(all|every|each) (of )?(my|the|them|those|these|reservations|"
    r"flights|bookings|upcoming)\b",
    re.I,
)
NO_ID = re.compile(
    r"(don't|do not|can't|cannot|didn't|not) (remember|know|have|recall|find)"
    r"[^.?!]{0,40}(reservation|booking|order) (id|number)",
    re.I,
)

# Error text → what to do before the call next time (the policy step missed).
ERROR_ADVICE = [
    (
        "payment_total",
        re.compile(r"payment amount does not add up", re.I),
        "compute the total with `calculate` (each segment's price for the cabin × passengers, "
        "plus non-free bags and insurance) and make the `payment_methods` amounts add up to it",
    ),
    (
        "balance",
        re.compile(r"(balance is not enough|not enough balance)", re.I),
        "check the remaining `amount` of the gift card or certificate in get_user_details' "
        "`payment_methods` and put the rest on another method",
    ),
    (
        "flight_unavailable",
        re.compile(r"not available on date", re.I),
        "check every (`flight_number`, `date`) in `flights` against "
        "search_direct_flight/search_onestop_flight for that date; segments that are not "
        "'available' must be replaced, not sent again",
    ),
    (
        "seats",
        re.compile(r"not enough seats", re.I),
        "check `available_seats` for the chosen cabin in the search results covers every "
        "passenger",
    ),
    (
        "certificate_update",
        re.compile(r"certificate cannot be used", re.I),
        "pay with a credit card or gift card from get_user_details: a certificate is not "
        "accepted for this change",
    ),
    (
        "payment_missing",
        re.compile(r"payment method .*not found|payment method not found", re.I),
        "use a `payment_id` exactly as get_user_details lists it for this user",
    ),
    (
        "reservation_missing",
        re.compile(r"reservation .*not found", re.I),
        "take the reservation id from get_user_details' `reservations` list",
    ),
    (
        "user_missing",
        re.compile(r"user .*not found", re.I),
        "ask the user for the exact user id and look it up with get_user_details",
    ),
]


def _is_action(tool: str) -> bool:
    return _is_write(tool) or tool.startswith(HANDOFF_PREFIXES)


def _is_write(tool: str) -> bool:
    return tool.startswith(WRITE_PREFIXES)


def _is_lookup(tool: str) -> bool:
    return tool.startswith(LOOKUP_PREFIXES)


def _is_error(text) -> bool:
    if isinstance(text, dict):
        return bool(text.get("error")) or str(text.get("status", "")).lower() in {
            "error",
            "failed",
            "failure",
        }
    return isinstance(text, str) and text.strip().lower().startswith(
        ("error", "exception", "traceback")
    )


def _short(value, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fmt_args(args: dict, keys=None, limit: int = 160) -> str:
    parts = []
    for key in keys or args:
        if key in args:
            parts.append(f"{key}={_short(args[key], 60)}")
    return _short(", ".join(parts), limit)


def _task_gist(text: str, limit: int = 110) -> str:
    text = re.sub(r"^\s*You are [\w.@-]+[.,]?\s*", "", text or "", flags=re.I)
    first = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
    return _short(first, limit)


@dataclass
class Call:
    step: int
    tool: str
    args: dict
    result: object = None
    result_step: int | None = None

    @property
    def failed(self) -> bool:
        return _is_error(self.result)

    @property
    def error_text(self) -> str:
        if isinstance(self.result, dict):
            return _short(self.result.get("error") or self.result)
        return _short(self.result or "", 160)

    def signature(self) -> str:
        return f"{self.tool}({json.dumps(self.args, sort_keys=True)})"


@dataclass
class Message:
    step: int
    role: str
    text: str


@dataclass
class Parsed:
    run: RunView
    calls: list[Call] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    observations: list[tuple[int, object]] = field(default_factory=list)

    @property
    def actions(self) -> list[Call]:
        """Writes plus hand-offs (transfer_to_human_agents): what contrast compares."""
        return [c for c in self.calls if _is_action(c.tool)]

    @property
    def writes(self) -> list[Call]:
        return [c for c in self.calls if _is_write(c.tool)]

    def tool_sequence(self) -> tuple[str, ...]:
        seq: list[str] = []
        for call in self.calls:
            if call.tool in NEUTRAL_TOOLS or call.failed:
                continue
            if not seq or seq[-1] != call.tool:
                seq.append(call.tool)
        return tuple(seq)


def run_parse(run: RunView) -> Parsed:
    """Pairs each tool call with its outcome. Shapes understood: an observation step
    after the call (by `result.call_id` when both carry one, else the first waiting call
    of the same tool, else the first waiting call), or the call's own `result` when no
    observation answers it. Arguments come from `result.arguments` (the importers'
    shape) or from the description `name({json})` / `name(k=v, …)`."""
    parsed = Parsed(run=run)
    waiting: list[Call] = []
    by_call_id: dict[str, Call] = {}
    own_result: dict[int, object] = {}
    for step in run.steps:
        if step.type in ("tool_call", "action") and (
            step.tool or "(" in step.description
        ):
            tool, args = parse_call(step)
            if not tool or tool in NEUTRAL_TOOLS and step.type == "decision":
                continue
            call = Call(step=step.index, tool=tool, args=args)
            result = step.result
            if isinstance(result, dict) and isinstance(result.get("arguments"), dict):
                call.args = result["arguments"]
                if result.get("call_id"):
                    by_call_id[str(result["call_id"])] = call
            elif result is not None:
                own_result[step.index] = result
            parsed.calls.append(call)
            waiting.append(call)
        elif step.type == "observation":
            meta = step.result if isinstance(step.result, dict) else {}
            value = (
                step.description if (step.description or "").strip() else step.result
            )
            if meta.get("is_error") and not _is_error(value):
                value = f"Error: {value}"
            parsed.observations.append((step.index, value))
            call = by_call_id.get(str(meta.get("call_id") or ""))
            if call is None or call not in waiting:
                call = next(
                    (c for c in waiting if step.tool and c.tool == step.tool),
                    waiting[0] if waiting else None,
                )
            if call is not None:
                waiting.remove(call)
                call.result, call.result_step = value, step.index
        elif step.type == "message":
            role, _, text = step.description.partition(":")
            role = role.strip().lower()
            if role in ("user", "assistant", "system", "agent", "human", "customer"):
                role = "user" if role in ("human", "customer") else role
                parsed.messages.append(
                    Message(step=step.index, role=role, text=text.strip())
                )
            else:
                parsed.messages.append(
                    Message(step=step.index, role="", text=step.description)
                )
    for call in waiting:  # no observation answered it: the call's own result, if any
        if call.step in own_result:
            call.result, call.result_step = own_result[call.step], call.step
    return parsed


def _json_obj(value):
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            loaded = json.loads(value)
        except ValueError:
            return None
        return loaded if isinstance(loaded, dict) else None
    return None


class OfflineReflector:
    name = "offline"

    def reflect(self, *, run: RunView, peers: list[RunView]) -> ReflectionResult:
        me = run_parse(run)
        others = [run_parse(p) for p in peers if p.id != run.id]
        lessons: list[Lesson] = []
        for analyse in (
            _tool_errors,
            _loops,
            _unconfirmed_writes,
            _missing_lookups,
            _contrast_same_task,
            _expected_actions,
            _contrast_task_type,
            _unchecked_reservations,
            _corrections,
            _no_tool_calls,
            _preferences,
            _durable_facts,
            _procedures,
        ):
            lessons.extend(analyse(me, others))
        return ReflectionResult(
            lessons=_dedupe(lessons),
            reflector=self.name,
            prompt_version=f"offline-{PROMPT_VERSION}",
        )

    def reflect_batch(self, *, runs: list[RunView]) -> ReflectionResult:
        """Runs the per-run analysis over every run against all the others and keeps the
        lessons found in at least two runs, with their frequency."""
        grouped: dict[tuple[str, str], list[tuple[RunView, Lesson]]] = defaultdict(list)
        for run in runs:
            for lesson in self.reflect(run=run, peers=runs).lessons:
                if lesson.kind in ("preference", "durable_fact"):
                    continue  # about one user or entity: not a pattern across runs
                grouped[(lesson.kind, lesson.key or lesson.content)].append(
                    (run, lesson)
                )
        patterns = []
        for (_kind, _key), found in grouped.items():
            run_ids = list(dict.fromkeys(r.id for r, _l in found))
            if len(run_ids) < 2:
                continue
            first = found[0][1]
            steps_by_run: dict = {}
            for run, lesson in found:
                steps_by_run.setdefault(run.id, set()).update(lesson.step_indexes)
            task_type = runs[0].task_type if runs else ""
            patterns.append(
                Lesson(
                    kind=first.kind,
                    content=first.content,
                    rationale=(
                        f"Batch reflection: found in {len(run_ids)} of {len(runs)} "
                        f"{task_type or 'untyped'} runs. {first.rationale}"
                    ),
                    confidence=round(
                        min(0.95, first.confidence + 0.03 * (len(run_ids) - 1)), 3
                    ),
                    key=first.key or first.content,
                    related_runs={rid: sorted(s) for rid, s in steps_by_run.items()},
                    run_ids=run_ids,
                    frequency=len(run_ids),
                )
            )
        patterns.sort(key=lambda lesson: (-lesson.frequency, lesson.content))
        return ReflectionResult(
            lessons=patterns,
            reflector=self.name,
            prompt_version=f"offline-batch-{PROMPT_VERSION}",
        )


def _dedupe(lessons: list[Lesson]) -> list[Lesson]:
    seen: dict[tuple[str, str], Lesson] = {}
    for lesson in lessons:
        k = (lesson.kind, lesson.key or lesson.content)
        if k in seen:
            seen[k].step_indexes = sorted(
                set(seen[k].step_indexes) | set(lesson.step_indexes)
            )
        else:
            seen[k] = lesson
    return list(seen.values())


# --- analyses ------------------------------------------------------------------------


def _tool_errors(me: Parsed, _others) -> list[Lesson]:
    by_key: dict[tuple[str, str], list[Call]] = defaultdict(list)
    advice_for: dict[tuple[str, str], str] = {}
    for call in me.calls:
        if not call.failed:
            continue
        name, advice = "other", ""
        for label, pattern, text in ERROR_ADVICE:
            if pattern.search(call.error_text):
                name, advice = label, text
                break
        if name == "other":
            advice = (
                "check its arguments against the lookups made before it (ids, "
                "dates, amounts) instead of guessing"
            )
        key = (call.tool, name if name != "other" else _error_shape(call.error_text))
        by_key[key].append(call)
        advice_for[key] = advice
    lessons = []
    for (tool, label), calls in by_key.items():
        first = calls[0]
        times = f" ({len(calls)} times)" if len(calls) > 1 else ""
        lessons.append(
            Lesson(
                kind="strategy_harmful",
                content=(
                    f"Before calling `{tool}`, {advice_for[(tool, label)]}: it was rejected"
                    f'{times} with "{first.error_text}".'
                ),
                rationale=(
                    f"Step {first.step}: `{tool}({_fmt_args(first.args)})` returned "
                    f'"{first.error_text}".'
                ),
                confidence=0.75 if label != "other" else 0.6,
                step_indexes=sorted(
                    {c.step for c in calls}
                    | {c.result_step for c in calls if c.result_step is not None}
                ),
                key=f"tool-error {tool} {label}",
            )
        )
    return lessons


def _error_shape(text: str) -> str:
    text = re.sub(r"\b[A-Z0-9]{5,}\b|\d+", "#", text.lower())
    return " ".join(text.split()[:8])


def _loops(me: Parsed, _others) -> list[Lesson]:
    lessons = []
    counts = Counter(c.signature() for c in me.calls if c.tool not in NEUTRAL_TOOLS)
    for signature, n in counts.items():
        calls = [c for c in me.calls if c.signature() == signature]
        failed = [c for c in calls if c.failed]
        tool = calls[0].tool
        if failed and n >= 2:
            lessons.append(
                Lesson(
                    kind="strategy_harmful",
                    content=(
                        f"Do not call `{tool}` again with the same arguments after it "
                        f"failed: this run repeated `{tool}({_fmt_args(calls[0].args, limit=90)})` "
                        f'{n} times and got "{failed[0].error_text}" each time; change the '
                        f"failing argument or transfer_to_human_agents."
                    ),
                    rationale=f"Identical calls at steps {', '.join(str(c.step) for c in calls)}.",
                    confidence=0.7,
                    step_indexes=[c.step for c in calls],
                    key=f"loop-after-error {tool}",
                )
            )
        elif n >= 3 and _is_lookup(tool):
            lessons.append(
                Lesson(
                    kind="strategy_harmful",
                    content=(
                        f"Reuse the result of `{tool}({_fmt_args(calls[0].args, limit=90)})` "
                        f"instead of calling it again: this run made the same lookup {n} "
                        f"times."
                    ),
                    rationale=f"Identical calls at steps {', '.join(str(c.step) for c in calls)}.",
                    confidence=0.5,
                    step_indexes=[c.step for c in calls],
                    key=f"repeated-lookup {tool}",
                )
            )
    # Consecutive failures of one write tool with changing arguments: a retry loop.
    streak: list[Call] = []
    for call in me.calls + [Call(step=-1, tool="", args={})]:
        if call.tool in NEUTRAL_TOOLS or _is_lookup(call.tool):
            continue
        if streak and call.tool == streak[-1].tool and call.failed:
            streak.append(call)
            continue
        if len(streak) >= 3 and len({c.signature() for c in streak}) > 1:
            tool = streak[0].tool
            lessons.append(
                Lesson(
                    kind="strategy_harmful",
                    content=(
                        f"After two failed `{tool}` calls, stop retrying: re-read the "
                        f"reservation with get_reservation_details and the user's request, "
                        f"or transfer_to_human_agents. This run tried `{tool}` "
                        f'{len(streak)} times in a row ("{streak[-1].error_text}").'
                    ),
                    rationale=f"Failed calls at steps {', '.join(str(c.step) for c in streak)}.",
                    confidence=0.65,
                    step_indexes=[c.step for c in streak],
                    key=f"retry-streak {tool}",
                )
            )
        streak = [call] if call.failed and _is_write(call.tool) else []
    return lessons


def _unconfirmed_writes(me: Parsed, _others) -> list[Lesson]:
    """A write needs an explicit yes in the user's last message before it (one yes may
    cover several changes made back to back)."""
    if not me.messages:
        return []  # no conversation recorded: nothing to judge
    lessons = []
    for call in me.writes:
        said = [m for m in me.messages if m.step < call.step and m.role == "user"]
        if said and CONFIRM.search(said[-1].text):
            continue
        quoted = f' (last user message: "{_short(said[-1].text, 90)}")' if said else ""
        lessons.append(
            Lesson(
                kind="strategy_harmful",
                content=(
                    f"List the details of `{call.tool}` ({_fmt_args(call.args, limit=100)}) "
                    f'and get the user\'s explicit "yes" before calling it: this run called '
                    f"it without a confirmation{quoted}."
                ),
                rationale=(
                    f"Step {call.step}: `{call.tool}` was called without a confirming "
                    f"user message before it."
                ),
                confidence=0.6,
                step_indexes=[call.step] + ([said[-1].step] if said else []),
                key=f"unconfirmed-write {call.tool}",
            )
        )
    return lessons


def _missing_lookups(me: Parsed, _others) -> list[Lesson]:
    lessons = []
    for call in me.writes:
        before = [c for c in me.calls if c.step < call.step]
        reservation = call.args.get("reservation_id")
        if reservation and not call.tool.startswith("book_"):
            looked = any(
                (
                    c.tool.startswith("get_reservation")
                    and c.args.get("reservation_id") == reservation
                )
                # A reservation this run just created is known without a lookup.
                or (
                    c.tool.startswith("book_")
                    and (_json_obj(c.result) or {}).get("reservation_id") == reservation
                )
                for c in before
            )
            if not looked:
                lessons.append(
                    Lesson(
                        kind="strategy_harmful",
                        content=(
                            f"Call get_reservation_details(reservation_id={reservation}) "
                            f"before `{call.tool}` to check its cabin, flights, passengers "
                            f"and insurance against the policy: this run changed the "
                            f"reservation without reading it first."
                        ),
                        rationale=f"Step {call.step}: `{call.tool}` with no prior lookup of {reservation}.",
                        confidence=0.65,
                        step_indexes=[call.step],
                        key=f"no-lookup-before {call.tool} get_reservation_details",
                    )
                )
        user = call.args.get("user_id")
        if (
            call.tool.startswith("book_")
            and user
            and not any(c.tool.startswith("get_user") for c in before)
        ):
            lessons.append(
                Lesson(
                    kind="strategy_harmful",
                    content=(
                        f"Call get_user_details(user_id={user}) before `{call.tool}` to "
                        f"read the saved payment methods, their balances and the membership "
                        f"level: this run booked without it."
                    ),
                    rationale=f"Step {call.step}: `{call.tool}` with no get_user_details before.",
                    confidence=0.6,
                    step_indexes=[call.step],
                    key=f"no-lookup-before {call.tool} get_user_details",
                )
            )
    return lessons


def _item_text(value) -> str:
    if isinstance(value, dict):
        ident = [
            k for k in value if k.endswith(("_number", "_id", "id", "date", "name"))
        ]
        return " ".join(
            str(value[k])
            for k in sorted(ident or value)
            if isinstance(value[k], (str, int, float))
        )
    return str(value)


def _flat(args: dict) -> dict:
    """Arguments as comparable text; a list of records becomes 'a b | c d' (sorted)."""
    out = {}
    for key, value in args.items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            out[key] = value
        elif isinstance(value, list):
            out[key] = "[" + " | ".join(sorted(_item_text(v) for v in value)) + "]"
        else:
            out[key] = json.dumps(value, sort_keys=True)
    return out


def _diff_text(key: str, want, got) -> tuple[str, str]:
    if isinstance(want, str) and want.startswith("[") and isinstance(got, str):
        want_items = set(want.strip("[]").split(" | ")) - {""}
        got_items = set(got.strip("[]").split(" | ")) - {""}
        extra, missing = sorted(got_items - want_items), sorted(want_items - got_items)
        return (
            f"{key} {', '.join(missing) or '(no others)'}",
            f"{', '.join(extra) or 'nothing else'}",
        )
    return f"{key}={_short(want, 50)}", f"{key}={_short(got, 50)}"


def _contrast_same_task(me: Parsed, others: list[Parsed]) -> list[Lesson]:
    if not me.run.failed:
        return []
    task = (me.run.task_description or "").strip()
    winners = [
        o
        for o in others
        if o.run.succeeded and task and (o.run.task_description or "").strip() == task
    ]
    if not winners:
        return []
    gist, n = _task_gist(task), len(winners)
    lessons = []
    # What the successful runs changed, tool by tool.
    win_tools: Counter = Counter()
    for w in winners:
        win_tools.update({c.tool for c in w.actions if not c.failed})
    mine = {c.tool: c for c in me.actions if not c.failed}
    mine_any = {c.tool: c for c in me.actions}
    for tool, k in win_tools.most_common():
        if k * 2 < n:
            continue
        example = next(
            c for w in winners for c in w.actions if c.tool == tool and not c.failed
        )
        related = {
            w.run.id: [c.step for c in w.actions if c.tool == tool]
            for w in winners
            if any(c.tool == tool for c in w.actions)
        }
        if tool not in mine:
            tried = mine_any.get(tool)
            how = (
                f'tried it and failed ("{tried.error_text}")'
                if tried
                else f"never called `{tool}`"
            )
            lessons.append(
                Lesson(
                    kind="strategy_helpful",
                    content=(
                        f'For "{gist}": call `{tool}({_fmt_args(example.args, limit=140)})` '
                        f"as {k} of {n} successful runs of this task did; the failed run "
                        f"{how}."
                    ),
                    rationale=(
                        f"Contrast with {n} successful run(s) of the same task; the failed "
                        f"run's changes: {', '.join(sorted(mine)) or 'none'}."
                    ),
                    confidence=round(min(0.9, 0.75 + 0.05 * k), 3),
                    step_indexes=[tried.step] if tried else [],
                    key=f"contrast-missing {task} {tool}",
                    related_runs=related,
                )
            )
            continue
        # Same tool: which arguments differ from what every successful call agreed on?
        agreed: dict = {}
        win_calls = [
            _flat(c.args)
            for w in winners
            for c in w.actions
            if c.tool == tool and not c.failed
        ]
        for key in win_calls[0]:
            values = {json.dumps(wc.get(key)) for wc in win_calls}
            if len(values) == 1:
                agreed[key] = win_calls[0][key]
        mine_flat = _flat(mine[tool].args)
        diff = {
            key: (value, mine_flat.get(key))
            for key, value in agreed.items()
            if mine_flat.get(key) != value
        }
        if diff:
            keys = sorted(diff)[:4]
            pairs = [_diff_text(key, *diff[key]) for key in keys]
            want = "; ".join(w for w, _g in pairs)
            got = "; ".join(g for _w, g in pairs)
            lessons.append(
                Lesson(
                    kind="strategy_harmful",
                    content=(
                        f'For "{gist}": successful runs called `{tool}` with {want}; '
                        f"the failed run used {got}. Take these values from the user's "
                        f"request and the policy, not from the current reservation."
                    ),
                    rationale=(
                        f"Step {mine[tool].step} compared with the `{tool}` calls of {n} "
                        f"successful run(s) of the same task."
                    ),
                    confidence=round(min(0.9, 0.7 + 0.05 * n), 3),
                    step_indexes=[mine[tool].step],
                    key=f"contrast-args {task} {tool} {' '.join(keys)}",
                    related_runs=related,
                )
            )
    # Changes none of the successful runs made (e.g. cancelling against the policy).
    for tool, call in mine.items():
        if win_tools[tool] == 0:
            lessons.append(
                Lesson(
                    kind="strategy_harmful",
                    content=(
                        f'For "{gist}": do not call `{tool}` '
                        f"({_fmt_args(call.args, limit=100)}); none of the {n} successful "
                        f"runs of this task did — check the policy before this change."
                    ),
                    rationale=f"Step {call.step}: a change no successful run of the task made.",
                    confidence=round(min(0.9, 0.65 + 0.05 * n), 3),
                    step_indexes=[call.step],
                    key=f"contrast-extra {task} {tool}",
                    related_runs={w.run.id: [] for w in winners},
                )
            )
    return lessons


def _contrast_task_type(me: Parsed, others: list[Parsed]) -> list[Lesson]:
    """Lookups that successful runs of the task type make before a write, missing here."""
    if not me.run.failed or not me.writes:
        return []
    winners = [o for o in others if o.run.succeeded]
    lessons = []
    for call in me.writes:
        before_me = {c.tool for c in me.calls if c.step < call.step}
        usage: Counter = Counter()
        total = 0
        for w in winners:
            target = next(
                (c for c in w.writes if c.tool == call.tool and not c.failed), None
            )
            if target is None:
                continue
            total += 1
            usage.update(
                {c.tool for c in w.calls if c.step < target.step and _is_lookup(c.tool)}
            )
        if total < 2:
            continue
        for lookup, k in usage.most_common():
            if k / total >= 0.6 and lookup not in before_me:
                lessons.append(
                    Lesson(
                        kind="strategy_helpful",
                        content=(
                            f"Call `{lookup}` before `{call.tool}`: {k} of {total} successful "
                            f"{me.run.task_type or 'similar'} runs did; this failed run "
                            f"called `{call.tool}` without it."
                        ),
                        rationale=(
                            f"Step {call.step} compared with the lookups that precede "
                            f"`{call.tool}` in successful runs of the task type."
                        ),
                        confidence=round(0.45 + 0.3 * k / total, 3),
                        step_indexes=[call.step],
                        key=f"precede {call.tool} {lookup}",
                    )
                )
    return lessons


def _unchecked_reservations(me: Parsed, _others) -> list[Lesson]:
    changes = [c for c in me.writes if not c.tool.startswith("book_")]
    if not changes:
        return []
    listed: list[str] = []
    list_step = None
    for call in me.calls:
        obj = _json_obj(call.result)
        if (
            call.tool.startswith("get_user")
            and obj
            and isinstance(obj.get("reservations"), list)
        ):
            listed = [str(r) for r in obj["reservations"]]
            list_step = call.step
    if len(listed) < 2:
        return []
    asked_all = any(
        m.role == "user" and ALL_OF_THEM.search(m.text) for m in me.messages
    )
    checked = {
        c.args.get("reservation_id")
        for c in me.calls
        if c.tool.startswith("get_reservation")
    }
    unchecked = [r for r in listed if r not in checked]
    if not asked_all or not unchecked:
        return []
    return [
        Lesson(
            kind="strategy_harmful",
            content=(
                f"When the user asks about all their reservations, open every id that "
                f"get_user_details lists with get_reservation_details before changing any: "
                f"this run left {len(unchecked)} of {len(listed)} unchecked "
                f"({', '.join(unchecked[:5])}) before `{changes[0].tool}`."
            ),
            rationale=f"Step {list_step} listed {len(listed)} reservations; {len(checked)} were read.",
            confidence=0.65,
            step_indexes=[list_step] + [c.step for c in changes],
            key=f"unchecked-reservations {changes[0].tool}",
        )
    ]


def _corrections(me: Parsed, _others) -> list[Lesson]:
    hits = [m for m in me.messages if m.role == "user" and CORRECTION.search(m.text)]
    if not hits or not me.run.failed:
        return []
    tools = sorted(
        {
            c.tool
            for c in me.calls
            if c.step < hits[-1].step and c.tool not in NEUTRAL_TOOLS
        }
    )
    return [
        Lesson(
            kind="strategy_harmful",
            content=(
                f'When the user says the agent misunderstood ("{_short(hits[0].text, 100)}"), '
                f"restate which reservation and segment they mean before the next "
                f"{'/'.join(f'`{t}`' for t in tools[:3]) or 'tool'} call; this run was "
                f"corrected {len(hits)} time(s) and kept going."
            ),
            rationale=f"User corrections at steps {', '.join(str(m.step) for m in hits)}.",
            confidence=0.5,
            step_indexes=[m.step for m in hits],
            key="user-corrections",
        )
    ]


def _no_tool_calls(me: Parsed, _others) -> list[Lesson]:
    if me.calls or not me.run.failed or not me.messages:
        return []
    no_id = [m for m in me.messages if m.role == "user" and NO_ID.search(m.text)]
    if no_id:
        return [
            Lesson(
                kind="strategy_helpful",
                content=(
                    "When the user cannot give the reservation id, ask for the user id and "
                    "find the reservation with get_user_details (its `reservations`) and "
                    "get_reservation_details instead of asking for the id again: this run "
                    "made no tool call and could not help."
                ),
                rationale=f'Step {no_id[0].step}: "{_short(no_id[0].text, 100)}"; no tool calls.',
                confidence=0.7,
                step_indexes=[m.step for m in no_id],
                key="no-tool-calls reservation-id-unknown",
            )
        ]
    return [
        Lesson(
            kind="strategy_harmful",
            content=(
                "Look the account up (get_user_details, get_reservation_details) before "
                "answering: this failed run ended without a single tool call."
            ),
            rationale=f"{len(me.messages)} messages and no tool call.",
            confidence=0.5,
            step_indexes=[me.messages[-1].step],
            key="no-tool-calls",
        )
    ]


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


def _preferences(me: Parsed, _others) -> list[Lesson]:
    lessons = []
    who = me.run.user_id
    for message in me.messages:
        if message.role != "user":
            continue
        for sentence in _sentences(message.text):
            if (
                not PREFERENCE.search(sentence)
                or len(sentence) < 12
                or "###" in sentence
            ):
                continue
            lessons.append(
                Lesson(
                    kind="preference",
                    content=f'{who or "The user"} prefers: "{_short(sentence, 200)}"',
                    rationale=f"Stated by the user at step {message.step}.",
                    confidence=0.6,
                    step_indexes=[message.step],
                    key=f"preference {who} {sentence.lower()}",
                    user_id=who,
                    memory_scope="user" if who else "namespace",
                )
            )
    return lessons[:5]


def _durable_facts(me: Parsed, _others) -> list[Lesson]:
    lessons = []
    acted = {
        c.args.get("reservation_id") for c in me.writes if c.args.get("reservation_id")
    }
    for call in me.calls:
        obj = _json_obj(call.result)
        if not obj:
            continue
        if call.tool.startswith("get_user") and obj.get("membership"):
            user = call.args.get("user_id") or me.run.user_id
            name = obj.get("name") if isinstance(obj.get("name"), dict) else {}
            full = " ".join(
                filter(None, [name.get("first_name"), name.get("last_name")])
            )
            lessons.append(
                Lesson(
                    kind="durable_fact",
                    content=(
                        f"User {user}{f' ({full})' if full else ''} has "
                        f"{obj['membership']} membership."
                    ),
                    rationale=f"Step {call.result_step}: get_user_details({user}) returned it.",
                    confidence=0.7,
                    step_indexes=[call.step, call.result_step],
                    key=f"membership {user} {obj['membership']}",
                    user_id=user or "",
                    entity=f"user:{user}",
                    memory_scope="user" if user else "namespace",
                )
            )
        if (
            call.tool.startswith("get_reservation")
            and obj.get("reservation_id") in acted
        ):
            rid = obj["reservation_id"]
            insurance = obj.get("insurance")
            bits = [
                f"cabin {obj.get('cabin')}" if obj.get("cabin") else "",
                f"{obj.get('flight_type')}" if obj.get("flight_type") else "",
                f"{obj.get('origin')}→{obj.get('destination')}"
                if obj.get("origin")
                else "",
                f"travel insurance {insurance}" if insurance else "",
            ]
            lessons.append(
                Lesson(
                    kind="durable_fact",
                    content=(
                        f"Reservation {rid} (user {obj.get('user_id', me.run.user_id)}): "
                        f"{', '.join(b for b in bits if b)}."
                    ),
                    rationale=f"Step {call.result_step}: get_reservation_details({rid}) returned it.",
                    confidence=0.65,
                    step_indexes=[call.step, call.result_step],
                    key=f"reservation {rid} {obj.get('cabin')} {insurance}",
                    user_id=str(obj.get("user_id") or me.run.user_id or ""),
                    entity=f"reservation:{rid}",
                    memory_scope="user"
                    if (obj.get("user_id") or me.run.user_id)
                    else "namespace",
                )
            )
    return lessons


def _procedures(me: Parsed, others: list[Parsed]) -> list[Lesson]:
    if not me.run.succeeded or not me.writes:
        return []
    sequence = me.tool_sequence()
    if len(sequence) < 2:
        return []
    same = [o for o in others if o.run.succeeded and o.tool_sequence() == sequence]
    if not same:
        return []
    k = len(same) + 1
    steps = " → ".join(f"`{t}`" for t in sequence)
    return [
        Lesson(
            kind="procedure",
            content=(
                f"For {me.run.task_type or 'these'} tasks that end in `{me.writes[-1].tool}`: "
                f"{steps}."
            ),
            rationale=f"The same tool sequence succeeded in {k} runs of this task type.",
            confidence=round(min(0.85, 0.45 + 0.1 * k), 3),
            step_indexes=[c.step for c in me.calls if c.tool in sequence],
            key=f"procedure {' '.join(sequence)}",
            related_runs={
                o.run.id: [c.step for c in o.calls if c.tool in sequence] for o in same
            },
        )
    ]


def _expected_actions(me: Parsed, _others) -> list[Lesson]:
    """When the run's metrics name the actions an evaluator expected
    (`metrics.expected_actions`, e.g. from tau-bench imports): the changes the failed
    run left out or made without need."""
    expected = me.run.metrics.get("expected_actions") if me.run.metrics else None
    if not me.run.failed or not isinstance(expected, list):
        return []
    want = Counter(t for t in expected if isinstance(t, str) and _is_action(t))
    done = Counter(c.tool for c in me.actions if not c.failed)
    gist = _task_gist(me.run.task_description)
    task = (me.run.task_description or "").strip()
    lessons = []
    instead = [t for t in done if t not in want]
    for tool, n in sorted(want.items()):
        if done[tool] >= n:
            continue
        times = f" {n} times" if n > 1 else ""
        made = (
            f"made it {done[tool]} time(s)" if done[tool] else f"never called `{tool}`"
        )
        also = (
            f" and called {', '.join(f'`{t}`' for t in instead)} instead"
            if instead
            else ""
        )
        lessons.append(
            Lesson(
                kind="strategy_helpful",
                content=(
                    f'For "{gist}": the task needed `{tool}`{times} (what the evaluator '
                    f"expected); the failed run {made}{also}."
                ),
                rationale=(
                    f"Expected actions {dict(want)}; the run's successful changes "
                    f"{dict(done) or 'none'}."
                ),
                confidence=0.7,
                step_indexes=[c.step for c in me.actions],
                key=f"expected-missing {task} {tool}",
            )
        )
    for tool in instead:
        calls = [c for c in me.actions if c.tool == tool and not c.failed]
        lessons.append(
            Lesson(
                kind="strategy_harmful",
                content=(
                    f'For "{gist}": `{tool}` was not needed '
                    f"({_fmt_args(calls[0].args, limit=90)}); the evaluator expected only "
                    f"{', '.join(f'`{t}`' for t in sorted(want)) or 'no change'}."
                ),
                rationale=f"Steps {', '.join(str(c.step) for c in calls)}: unexpected change.",
                confidence=0.65,
                step_indexes=[c.step for c in calls],
                key=f"expected-extra {task} {tool}",
            )
        )
    return lessons
