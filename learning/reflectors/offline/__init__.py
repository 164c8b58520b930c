"""The offline reflector: a deterministic, domain-neutral analysis of a run's steps,
its outcome, its feedback and a contrast with successful runs of the same task and
task type. No network; the same input gives the same lessons. Domain knowledge, where
a namespace wants it, comes in as data (`RunView.rules`), never as code here.

Modules: `parsing` (calls and their outcomes), `signals` (what a failure looks like),
`knowledge` (which tools change state, learned from the data), `failures` (lessons
from failing calls), `outcome` (gold answers, expected actions), `contrast` (with
successful peers), `conversation` (asking a user again for what they cannot give),
`feedback` (corrections after the run), `rules` (a namespace's own rules),
`memories` (preferences and durable facts), `aggregation` (precision gates, merging,
batches)."""

from collections import OrderedDict

from learning.reflectors.base import PROMPT_VERSION, ReflectionResult, RunView

from .aggregation import batch_patterns, lessons_gate
from .context import Context
from .contrast import contrast_lessons
from .conversation import conversation_lessons
from .failures import failure_lessons
from .feedback import feedback_lessons
from .knowledge import tool_knowledge
from .memories import memory_lessons
from .outcome import outcome_lessons
from .parsing import Parsed, run_parse
from .rules import rule_lessons, rules_state_tools

PARSE_CACHE_SIZE = 512
_parsed: OrderedDict = OrderedDict()


def parsed_view(run: RunView) -> Parsed:
    """`run_parse`, remembered for the runs seen last: peers are the same few dozen
    successful runs for every reflection of a task type, and parsing them again each
    time would dominate the cost of reflecting. The key holds everything a parse reads
    that can change (steps appended, outcome or score revised, feedback added)."""
    key = (run.id, len(run.steps), run.status, run.score, len(run.feedback))
    found = _parsed.get(key)
    if found is not None:
        _parsed.move_to_end(key)
        return found
    parsed = run_parse(run)
    _parsed[key] = parsed
    if len(_parsed) > PARSE_CACHE_SIZE:
        _parsed.popitem(last=False)
    return parsed


ANALYSES = (
    feedback_lessons,
    rule_lessons,
    outcome_lessons,
    contrast_lessons,
    failure_lessons,
    conversation_lessons,
    memory_lessons,
)


class OfflineReflector:
    name = "offline"

    def reflect(self, *, run: RunView, peers: list[RunView]) -> ReflectionResult:
        me = run_parse(run)
        others = [parsed_view(p) for p in peers if p.id != run.id]
        return ReflectionResult(
            lessons=self._lessons(me, others),
            reflector=self.name,
            prompt_version=f"offline-{PROMPT_VERSION}",
        )

    def _lessons(self, me: Parsed, others: list[Parsed]):
        rules = me.run.rules if isinstance(me.run.rules, dict) else {}
        ctx = Context(
            me=me,
            peers=others,
            tools=tool_knowledge([me, *others], declared=rules_state_tools(rules)),
            rules=rules,
        )
        lessons = []
        for analyse in ANALYSES:
            lessons.extend(analyse(ctx))
        return lessons_gate(lessons)

    def reflect_batch(self, *, runs: list[RunView]) -> ReflectionResult:
        """Every run against all the others; the lessons found in at least two runs,
        with their frequency and every run as evidence."""
        parsed = [run_parse(r) for r in runs]
        found = []
        for me in parsed:
            others = [p for p in parsed if p is not me]
            found += [(me.run, lesson) for lesson in self._lessons(me, others)]
        return ReflectionResult(
            lessons=batch_patterns(
                found, total=len(runs), task_type=runs[0].task_type if runs else ""
            ),
            reflector=self.name,
            prompt_version=f"offline-batch-{PROMPT_VERSION}",
        )


__all__ = ["OfflineReflector", "run_parse"]
