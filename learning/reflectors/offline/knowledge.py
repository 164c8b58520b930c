"""What the data says about tools: which ones change state, which only read, which end
a run.

Never from a tool's name. A tool changes state when a call repeated with the same
arguments answers differently after it (the record read before and after an update,
the script re-run after an edit), when its own answer shows a record it names in its
arguments with other values than an earlier answer showed, or when the namespace's
rules say so. A tool only reads when calling it again with the same arguments answers
the same. A tool ends runs when runs end on its answer (a hand-off, a final answer).
Tools with no evidence are unknown, and analyses that need to know treat them with
caution (an unknown tool between two identical calls may have changed something, so
the second is not called a loop)."""

import re
from collections import Counter
from dataclasses import dataclass, field

from .parsing import Call, Parsed, norm_value


@dataclass
class ToolKnowledge:
    changes: set[str] = field(default_factory=set)
    reads: set[str] = field(default_factory=set)
    ends: set[str] = field(default_factory=set)

    @property
    def consequential(self) -> set[str]:
        """What a contrast compares: the calls that change something or end the run."""
        return self.changes | self.ends

    def may_change(self, tool: str) -> bool:
        """True unless the tool is known to only read."""
        return tool in self.changes or tool not in self.reads

    def inert_between(self, calls: list[Call]) -> bool:
        """Nothing between two calls can have changed state: every call there failed
        (a rejected call changes nothing) or only reads."""
        return all(c.failed or not self.may_change(c.tool) for c in calls)


def _values(call: Call) -> set[str]:
    out = set()
    for value in call.args.values():
        if isinstance(value, (str, int, float)) and len(str(value)) >= 2:
            out.add(norm_value(value))
    return out


def _record_changes(parsed: Parsed, changed: Counter) -> None:
    """A call whose answer shows a record it names (an id among its arguments) with
    other values than the last answer that showed the same record."""
    latest: dict[tuple[str, str], dict] = {}
    for call in parsed.calls:
        record = call.record
        if record is None:
            continue
        named = {norm_value(v) for v in call.args.values() if isinstance(v, str)}
        ids = [
            (k, norm_value(v))
            for k, v in record.items()
            if (k == "id" or k.endswith("_id")) and isinstance(v, str)
        ]
        for key in ids:
            before = latest.get(key)
            if before is not None and key[1] in named and before[0] != call.tool:
                shared = set(before[1]) & set(record)
                if any(before[1][k] != record[k] for k in shared if k != key[0]):
                    changed[call.tool] += 1
                    break
        for key in ids:
            latest[key] = (call.tool, record)


_DONE = re.compile(
    r"\b(?:added|created|updated|deleted|removed|cancell?ed|sent|saved|booked|"
    r"scheduled|submitted|transferred|refunded|issued|applied|written|moved|renamed|"
    r"successful(?:ly)?|succeeded|completed)\b",
    re.I,
)


def _acknowledged(parsed: Parsed, changed: Counter) -> None:
    """A call answered by a short confirmation that something was done ("Transfer
    successful", "Certificate … added to user …")."""
    for call in parsed.calls:
        if call.failed or call.result is None:
            continue
        text = call.result_text.strip()
        if (
            0 < len(text) <= 200
            and not text.startswith(("{", "["))
            and _DONE.search(text)
        ):
            changed[call.tool] += 1


def _evidence(parsed: Parsed) -> tuple[dict, dict, frozenset, str, tuple]:
    """(tools that changed a repeated call's answer, tools whose repeated calls
    answered the same, tools that were the only thing between two different answers)
    in one run; kept on the parsed run, which is reused while it is cached."""
    cached = getattr(parsed, "_tool_evidence", None)
    if cached is not None:
        return cached
    changed: Counter = Counter()
    same: Counter = Counter()
    sole: set = set()
    _record_changes(parsed, changed)
    _acknowledged(parsed, changed)
    last: dict[str, int] = {}
    calls = parsed.calls
    for position, call in enumerate(calls):
        if call.result is None:
            continue
        earlier = last.get(call.signature)
        last[call.signature] = position
        if earlier is None:
            continue
        before = calls[earlier]
        if before.failed or call.failed:
            continue
        between = calls[earlier + 1 : position]
        if norm_value(before.result_text) == norm_value(call.result_text):
            same[call.tool] += 1
            continue
        tools = {c.tool for c in between if not c.failed and c.tool != call.tool}
        if len(tools) == 1:
            sole |= tools
        shared = _values(call)
        for c in between:
            if not c.failed and c.tool != call.tool and _values(c) & shared:
                changed[c.tool] += 1
    parsed._tool_evidence = (
        dict(changed),
        dict(same),
        frozenset(sole),
        _ending_tool(parsed),
        tuple(parsed.tools()),
    )
    return parsed._tool_evidence


def _ending_tool(parsed: Parsed) -> str:
    """The tool whose call, or its answer, is the run's last step."""
    if not parsed.calls or not parsed.run.steps:
        return ""
    last = parsed.calls[-1]
    return last.tool if parsed.run.steps[-1].index in last.steps else ""


@dataclass
class _Tally:
    changed: set = field(default_factory=set)
    same: set = field(default_factory=set)
    ending: Counter = field(default_factory=Counter)
    calling: Counter = field(default_factory=Counter)

    def add(self, parsed: Parsed) -> None:
        run_changed, run_same, run_sole, run_end, run_tools = _evidence(parsed)
        self.changed.update(run_changed, run_sole)
        self.same.update(run_same)
        self.calling.update(run_tools)
        if run_end:
            self.ending[run_end] += 1

    def merged(self, other: "_Tally") -> "_Tally":
        return _Tally(
            changed=self.changed | other.changed,
            same=self.same | other.same,
            ending=self.ending + other.ending,
            calling=self.calling + other.calling,
        )


_TALLY_CACHE_SIZE = 64
_tallies: dict = {}


def _peers_tally(peers: list[Parsed]) -> _Tally:
    """The peers' evidence, remembered by the set of peers: reflections of one task
    type in a burst see the same peers."""
    key = frozenset(p.key for p in peers)
    tally = _tallies.get(key)
    if tally is None:
        tally = _Tally()
        for parsed in peers:
            tally.add(parsed)
        if len(_tallies) >= _TALLY_CACHE_SIZE:
            _tallies.pop(next(iter(_tallies)))
        _tallies[key] = tally
    return tally


def tool_knowledge(
    runs: list[Parsed], *, declared: list[str] | None = None
) -> ToolKnowledge:
    """Learn from these runs (the one reflected first, then its peers) which tools
    change state and which only read; `declared` state-changing tools (namespace
    rules) are added."""
    own = _Tally()
    if runs:
        own.add(runs[0])
    tally = own.merged(_peers_tally(runs[1:])) if len(runs) > 1 else own
    changes = tally.changed | set(declared or ())
    reads = {tool for tool in tally.same if tool not in changes}
    ends = {
        tool
        for tool, n in tally.ending.items()
        if n >= 2 and 4 * n >= tally.calling[tool] and tool not in reads
    }
    return ToolKnowledge(changes=changes, reads=reads, ends=ends)
