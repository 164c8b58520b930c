"""What every analysis reads: the run, its successful peers, what is known about the
tools, the namespace's rules; and the one way a finding becomes a `Lesson`."""

from dataclasses import dataclass, field
from functools import cached_property

from learning.lessons import evidence_confidence
from learning.reflectors.base import Lesson

from .knowledge import ToolKnowledge
from .parsing import Parsed


@dataclass
class Context:
    me: Parsed
    peers: list[Parsed]
    tools: ToolKnowledge
    rules: dict = field(default_factory=dict)
    # Steps an earlier analysis explained (a namespace rule matched the error there):
    # later ones leave them alone, so one failure gives one lesson.
    covered: set = field(default_factory=set)

    @property
    def run(self):
        return self.me.run

    @property
    def failed(self) -> bool:
        return self.me.run.failed

    def same_task_winners(self) -> list[Parsed]:
        return self._winners[1]

    def winners(self) -> list[Parsed]:
        return self._winners[0]

    @cached_property
    def _winners(self) -> tuple[list[Parsed], list[Parsed]]:
        """(successful peers, those of the same task), computed once per reflection."""
        task = (self.run.task_description or "").strip()
        winners = [p for p in self.peers if p.run.succeeded]
        same = [
            p
            for p in winners
            if task and (p.run.task_description or "").strip() == task
        ]
        return winners, same


def strategy(
    *,
    key: str,
    when: str,
    directive: str,
    why: str,
    steps: list[int],
    base: float,
    provenance: str,
    polarity: str = "do",
    runs: int = 1,
    consistency: float = 1.0,
    related: dict | None = None,
    rationale: str = "",
    root_cause: bool = False,
) -> Lesson:
    """A strategy lesson in the lesson shape: `content` is rendered from polarity,
    situation and directive (never written by hand); the kind follows the polarity
    (`strategy_harmful` for a pattern to avoid)."""
    return Lesson(
        kind="strategy_harmful" if polarity == "avoid" else "strategy_helpful",
        polarity=polarity,
        when=when,
        directive=directive,
        why=why,
        rationale=rationale or why,
        provenance=provenance,
        confidence=evidence_confidence(base=base, runs=runs, consistency=consistency),
        step_indexes=sorted(set(steps)),
        key=key,
        related_runs=related or {},
        root_cause=root_cause,
    )
