"""The reflector interface and the plain data it works on (no ORM inside reflectors)."""

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from learning.lessons import POLARITIES, lesson_render

PROMPT_VERSION = "reflect-v1"


@dataclass
class StepView:
    index: int
    type: str
    description: str
    tool: str = ""
    result: Any = None


@dataclass
class FeedbackView:
    """A signal about the run after it ended: a person's correction, a monitor's
    alert, a failed test, a judge's verdict. First-class evidence for reflection."""

    feedback_type: str
    score: float
    source: str = ""
    message: str = ""
    metrics: dict = field(default_factory=dict)
    created_at: str = ""


@dataclass
class RecalledView:
    """A playbook lesson the run received through recall (from its recall log)."""

    key: str
    type: str
    text: str
    playbook: str = ""
    version: int | None = None


@dataclass
class RunView:
    id: uuid.UUID
    task_type: str
    task_description: str
    status: str
    score: float | None  # the effective score
    user_id: str = ""
    agent: str = ""
    error_message: str = ""
    steps: list[StepView] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    session_id: str = ""
    external_id: str = ""
    success_score: float | None = None  # the run's own outcome, before feedback
    duration_ms: int | None = None
    tokens_used: int | None = None
    feedback: list[FeedbackView] = field(default_factory=list)
    recalled: list[RecalledView] = field(default_factory=list)
    # The namespace's reflection rules (data a user writes: which tools change state,
    # advice for known errors, required steps); {} when it has none.
    rules: dict = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.status == "success" and (self.score is None or self.score >= 0.5)

    @property
    def failed(self) -> bool:
        return not self.succeeded


@dataclass
class Lesson:
    """One candidate-to-be, in the lesson shape (`learning.lessons`): polarity, the
    situation (`when`), the directive and the reason (`why`); `content` is rendered
    from them when a directive is given. `provenance` says where it came from (success,
    failure, contrast, feedback, batch) and never decides polarity. `key` is what makes
    the same lesson found in another run merge into one candidate (defaults to the
    content)."""

    kind: str
    content: str = ""
    rationale: str = ""
    confidence: float = 0.5
    step_indexes: list[int] = field(default_factory=list)
    key: str = ""
    user_id: str = ""
    entity: str = ""
    memory_scope: str = ""
    # Other runs that show the same lesson (contrastive evidence): {run_id: [steps]}.
    related_runs: dict = field(default_factory=dict)
    # Batch reflection: the runs that showed it and how often.
    run_ids: list = field(default_factory=list)
    frequency: int = 1
    polarity: str = ""  # do | avoid; "" = classify from content
    when: str = ""
    directive: str = ""
    why: str = ""
    provenance: str = ""
    # The lesson names why this run failed (not just something it could do better).
    root_cause: bool = False

    def __post_init__(self):
        if self.directive and self.polarity in POLARITIES:
            self.content = lesson_render(
                polarity=self.polarity, when=self.when, directive=self.directive
            )

    def as_item(self) -> dict:
        return {
            "kind": self.kind,
            "description": self.content,
            "evidence": self.rationale,
            "confidence": self.confidence,
            "steps": self.step_indexes,
            "frequency": self.frequency,
            "polarity": self.polarity,
            "when": self.when,
            "directive": self.directive,
            "why": self.why,
            "provenance": self.provenance,
            "key": self.key,
            "root_cause": self.root_cause,
        }


STRATEGY_TAGS = ("helpful", "harmful", "neutral")


@dataclass
class StrategyTag:
    """A reflector's verdict on one playbook strategy the run recalled: did it help
    the run, harm it, or not matter (`key` is the strategy's key)."""

    key: str
    tag: str  # helpful | harmful | neutral
    reason: str = ""
    text: str = ""

    def as_item(self) -> dict:
        return {
            "kind": "strategy_tag",
            "key": self.key,
            "tag": self.tag,
            "description": f"Recalled lesson tagged {self.tag}: {self.text}"[:500],
            "evidence": self.reason,
        }


@dataclass
class ReflectionResult:
    lessons: list[Lesson]
    reflector: str
    prompt_version: str = PROMPT_VERSION
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    fallback: bool = False
    fallback_reason: str = ""
    summary: str = ""
    # Verdicts on the strategies the run recalled; they feed the strategies'
    # helpful/harmful counters (playbooks.counters.strategy_counters_add).
    strategy_tags: list[StrategyTag] = field(default_factory=list)


class Reflector(Protocol):
    name: str

    def reflect(self, *, run: RunView, peers: list[RunView]) -> ReflectionResult:
        """Lessons from one finished run; `peers` are other finished runs of the same
        task type (same task first) for contrast."""

    def reflect_batch(self, *, runs: list[RunView]) -> ReflectionResult:
        """Patterns common to many runs of one task type, with frequencies."""


_CALL = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*\((.*)\)\s*$", re.S)
# A key starts at a word's start (from inside a word it ends at the same place, so
# nothing is lost; without this a long word was rescanned from each of its letters).
_KV = re.compile(r"(?<!\w)(\w+)\s*=\s*('[^']*'|\"[^\"]*\"|[^,]+)")


def parse_call(step: StepView) -> tuple[str, dict]:
    """(tool, arguments) of a tool_call step: `name({json})` or `name(k=v, …)`."""
    match = _CALL.match(step.description or "")
    tool = step.tool or (match.group(1) if match else "")
    args: dict = {}
    if match:
        inner = match.group(2).strip()
        if inner.startswith("{"):
            try:
                loaded = json.loads(inner)
                args = loaded if isinstance(loaded, dict) else {}
            except ValueError:
                args = {}
        else:
            args = {k: v.strip().strip("'\"") for k, v in _KV.findall(inner)}
    return tool, args
