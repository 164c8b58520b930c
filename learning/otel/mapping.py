"""One trace's spans → what the ingest service takes: a run payload (as
``POST /api/v1/runs/`` takes it) with one step per span, and the feedback its
evaluations carry. Pure functions: the database is `learning.otel.ingest`'s.

The run is the trace's root when that is an agent or chain span (the whole trace is
the run), else its outermost agent span (``invoke_agent``, OpenInference ``AGENT``),
else its root span of any kind; its ancestors are not steps. A trace whose run span
has not arrived yet is a ``running`` run that later exports extend and complete.
"""

from dataclasses import dataclass, field
from typing import Any

from learning.limits import (
    MAX_AGENT,
    MAX_FEEDBACK_MESSAGE,
    MAX_ID,
    MAX_PLAYBOOK_VERSIONS,
    MAX_TASK_DESCRIPTION,
)
from learning.models import RunStatus
from learning.otel import conventions as c
from learning.otel.decode import OtelSpan
from learning.otel.steps import clip, iso, step_payload

EXTERNAL_ID_PREFIX = "otel-"
PLACEHOLDER_TASK = "OpenTelemetry trace {trace_id} (agent span not received yet)"
EVALUATION_EVENT = "gen_ai.evaluation.result"
# Container spans are the run itself, not one of its steps, when they are its root.
CONTAINERS = (c.AGENT, c.CHAIN, c.OTHER, "")
RUN_FIELD_LIMITS = {"task_type": MAX_ID, "session_id": MAX_ID, "user_id": MAX_ID}
LABEL_SCORES = {
    **dict.fromkeys(
        ("pass", "passed", "correct", "relevant", "true", "yes", "success", "good"),
        1.0,
    ),
    **dict.fromkeys(
        (
            "fail",
            "failed",
            "incorrect",
            "not_relevant",
            "irrelevant",
            "false",
            "no",
            "failure",
            "bad",
            "hallucinated",
        ),
        0.0,
    ),
}


@dataclass
class StoredRun:
    """What mapping needs to know of the run a trace already has."""

    id: str
    finished: bool
    root_span_id: str
    parent_span_id: str
    placeholder_task: bool


@dataclass
class Evaluation:
    """Feedback an evaluation carries: `data` for `payloads.feedback_clean`, and
    `where` to name it in a message."""

    data: dict[str, Any]
    where: str


@dataclass
class TracePlan:
    trace_id: str
    external_id: str
    root: OtelSpan | None
    run: dict[str, Any]  # the whole run payload, steps included
    task_found: bool
    sources: dict[str, str]  # run field → the attribute it came from
    step_spans: list[OtelSpan]
    evaluations: list[Evaluation] = field(default_factory=list)

    @property
    def steps(self) -> list[dict[str, Any]]:
        return self.run["steps"]


def is_agent_trace(spans: list[OtelSpan]) -> bool:
    """Whether any span follows a convention (plain HTTP traces are not runs)."""
    return any(c.span_kind(s) or evaluations(s) for s in spans)


# --- evaluations -------------------------------------------------------------------


def _label_score(label: str) -> float | None:
    return LABEL_SCORES.get(label.strip().lower().replace(" ", "_").replace("-", "_"))


def _evaluation(
    span: OtelSpan, values: dict[str, Any], origin: dict[str, Any]
) -> Evaluation:
    """`values`: name, score, label, explanation (and a feedback type, if said)."""
    name = c.text(values.get("name"))
    label = c.text(values.get("label"))
    raw = values.get("score")
    score = c.number(raw)
    if (score is None or not 0.0 <= score <= 1.0) and _label_score(label) is not None:
        score = _label_score(label)
    metrics: dict[str, Any] = {"otel": origin, "evaluation": {"name": name}}
    if c.number(raw) is not None:
        metrics["evaluation"]["score"] = c.number(raw)
    if label:
        metrics["evaluation"]["label"] = label
    data = {
        "feedback_type": c.text(values.get("feedback_type")) or "llm_judge",
        # A score outside 0–1 without a pass/fail label is left for feedback_clean
        # to refuse, so the message says what the REST API would.
        "score": score if score is not None else raw,
        "source": clip(c.text(values.get("source")) or name, MAX_ID),
        "message": clip(c.text(values.get("explanation")), MAX_FEEDBACK_MESSAGE),
        "metrics": metrics,
    }
    return Evaluation(data=data, where=f'evaluation "{name}" on {span.label}')


def _evaluation_values(attrs: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {
        "name": attrs.get(f"{prefix}name"),
        "score": attrs.get(f"{prefix}score.value", attrs.get(f"{prefix}score")),
        "label": attrs.get(f"{prefix}score.label", attrs.get(f"{prefix}label")),
        "explanation": attrs.get(f"{prefix}explanation"),
        "feedback_type": attrs.get("flywheel.feedback_type"),
        "source": attrs.get("flywheel.feedback_source"),
    }


def evaluations(span: OtelSpan) -> list[Evaluation]:
    """``gen_ai.evaluation.result`` events on the span, the same attributes on the
    span itself, and OpenInference's ``evaluations.N.evaluation.*`` (span or trace
    scope)."""
    ids = {"trace_id": span.trace_id, "span_id": span.span_id}
    out = []
    for index, event in enumerate(span.events):
        if event.name == EVALUATION_EVENT:
            values = _evaluation_values(
                {**span.attributes, **event.attributes}, "gen_ai.evaluation."
            )
            origin = {**ids, "event": index, "evaluation": c.text(values["name"])}
            out.append(_evaluation(span, values, origin))
    if span.attributes.get("gen_ai.evaluation.name"):
        values = _evaluation_values(span.attributes, "gen_ai.evaluation.")
        origin = {**ids, "event": "span", "evaluation": c.text(values["name"])}
        out.append(_evaluation(span, values, origin))
    for scope in ("evaluations.", "trace.evaluations."):
        for index, item in enumerate(c.indexed(span.attributes, scope)):
            values = _evaluation_values(
                {
                    **item,
                    "flywheel.feedback_type": span.attributes.get(
                        "flywheel.feedback_type"
                    ),
                },
                "evaluation.",
            )
            origin = {
                **ids,
                "event": f"{scope}{index}",
                "evaluation": c.text(values["name"]),
            }
            out.append(_evaluation(span, values, origin))
    return out


def _is_evaluation_span(span: OtelSpan) -> bool:
    return bool(span.attributes.get("gen_ai.evaluation.name"))


# --- the run -----------------------------------------------------------------------


def _root(spans: list[OtelSpan], kinds: dict[str, str]) -> OtelSpan | None:
    def start(span: OtelSpan) -> tuple[int, int]:
        return (span.start_ns, span.end_ns)

    tops = [s for s in spans if not s.parent_span_id]
    containers = [s for s in tops if kinds[s.span_id] in (c.AGENT, c.CHAIN)]
    if containers:
        return min(containers, key=start)
    agents = [s for s in spans if kinds[s.span_id] == c.AGENT]
    agent_ids = {s.span_id for s in agents}
    outer = [s for s in agents if s.parent_span_id not in agent_ids]
    if outer:
        return min(outer, key=start)
    return min(tops, key=start) if tops else None


def _outside(
    spans: list[OtelSpan],
    root: OtelSpan | None,
    kinds: dict[str, str],
    stored: StoredRun | None,
) -> set[str]:
    """Span ids that are not steps: a container root, the root's ancestors (an HTTP
    request around the agent), what a finished run already has as its root."""
    by_id = {s.span_id: s for s in spans}
    out = set()
    if root is not None:
        if kinds[root.span_id] in CONTAINERS:
            out.add(root.span_id)
        parent = by_id.get(root.parent_span_id)
        while parent is not None and parent.span_id not in out:
            out.add(parent.span_id)
            parent = by_id.get(parent.parent_span_id)
    if stored is not None and stored.root_span_id:
        for span in spans:
            if span.span_id in (stored.root_span_id, stored.parent_span_id) or (
                not span.parent_span_id
            ):
                out.add(span.span_id)
    return out


def _first_attribute(
    spans: list[OtelSpan], keys: tuple[str, ...]
) -> tuple[Any, str | None]:
    for span in spans:
        key = c.first_key(span.attributes, keys)
        if key:
            return span.attributes[key], key
    return None, None


def _identity(
    run: dict[str, Any], sources: dict[str, str], spans: list[OtelSpan]
) -> None:
    for name, keys in c.RUN_ATTRIBUTES.items():
        value, key = _first_attribute(spans, keys)
        if key is None and name == "agent":  # the service, last
            service = c.text(spans[0].resource.get("service.name")) if spans else ""
            # The SDK's default ("unknown_service:python") names nothing: the token's
            # name is better.
            if service and not service.startswith("unknown_service"):
                value, key = service, "service.name"
        if key is not None:
            limit = MAX_AGENT if name == "agent" else RUN_FIELD_LIMITS[name]
            run[name] = clip(c.text(value).strip(), limit)
            sources[name] = key


def _versions(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list):
        value = [value]
    return [clip(c.text(v), MAX_ID) for v in value][:MAX_PLAYBOOK_VERSIONS]


def _outcome(
    run: dict[str, Any], sources: dict[str, str], root: OtelSpan, spans: list[OtelSpan]
) -> None:
    """The run's outcome from its root span (and ``flywheel.*`` attributes)."""
    attrs = root.attributes
    failed = c.failed(root)
    status = attrs.get("flywheel.status")
    if status is not None and status != RunStatus.RUNNING:
        sources["status"] = "flywheel.status"
    else:
        status = RunStatus.FAILURE if failed else RunStatus.SUCCESS
    run["status"] = status
    score = attrs.get("flywheel.success_score")
    if score is not None:
        sources["success_score"] = "flywheel.success_score"
    else:
        score = 1.0 if status == RunStatus.SUCCESS else 0.0
    run["success_score"] = score
    run["error_message"] = c.error_text(root) if failed else ""
    if root.start_ns and root.end_ns >= root.start_ns:
        run["duration_ms"] = (root.end_ns - root.start_ns) // 1_000_000
    versions = attrs.get("flywheel.playbook_versions")
    if versions is not None:
        run["playbook_versions"] = _versions(versions)
        sources["playbook_versions"] = "flywheel.playbook_versions"
    run["started_at"] = iso(root.start_ns)
    run["completed_at"] = iso(max(root.end_ns, root.start_ns))
    otel = {
        "trace_id": root.trace_id,
        "span_id": root.span_id,
        "parent_span_id": root.parent_span_id,
        "spans": len(spans),
    }
    if attrs.get("gen_ai.agent.id"):
        otel["agent_id"] = c.text(attrs["gen_ai.agent.id"])
    run["metrics"] = {"otel": otel}


def step_totals(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """tokens_used and cost_usd summed over steps (None when no step says)."""
    tokens = [s["tokens"] for s in steps if s.get("tokens") is not None]
    costs = [
        s["result"]["cost_usd"]
        for s in steps
        if isinstance(s.get("result"), dict) and s["result"].get("cost_usd") is not None
    ]
    return {
        "tokens_used": sum(tokens) if tokens else None,
        "cost_usd": sum(costs) if costs else None,
    }


def trace_plan(spans: list[OtelSpan], *, stored: StoredRun | None) -> TracePlan:
    """What one trace's spans (of one export) add to its run."""
    trace_id = spans[0].trace_id
    kinds = {s.span_id: c.span_kind(s) for s in spans}
    ordered = sorted(spans, key=lambda s: (s.start_ns, s.end_ns))
    root = None if stored is not None and stored.finished else _root(spans, kinds)
    outside = _outside(spans, root, kinds, stored)
    step_spans = [
        s for s in ordered if s.span_id not in outside and not _is_evaluation_span(s)
    ]
    steps = [step_payload(s, kinds[s.span_id]) for s in step_spans]
    if stored is not None and stored.finished:
        for step in steps:
            step["result"]["late"] = True
    context = ([root] if root is not None else []) + [
        s for s in ordered if s is not root
    ]
    task = next((t for s in context if (t := c.task_text(s, kinds[s.span_id]))), "")
    run: dict[str, Any] = {
        "external_id": EXTERNAL_ID_PREFIX + trace_id,
        "task_description": clip(
            task
            or (root.name if root is not None else "")
            or PLACEHOLDER_TASK.format(trace_id=trace_id),
            MAX_TASK_DESCRIPTION,
        ),
        "steps": steps,
    }
    sources: dict[str, str] = {}
    _identity(run, sources, context)
    if root is not None:
        _outcome(run, sources, root, spans)
        run.update({k: v for k, v in step_totals(steps).items() if v is not None})
    else:
        run["started_at"] = iso(
            min((s.start_ns for s in spans if s.start_ns), default=0)
        )
        run["metrics"] = {"otel": {"trace_id": trace_id}}
    return TracePlan(
        trace_id=trace_id,
        external_id=run["external_id"],
        root=root,
        run=run,
        task_found=bool(task),
        sources=sources,
        step_spans=step_spans,
        evaluations=[e for s in ordered for e in evaluations(s)],
    )
