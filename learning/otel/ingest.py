"""OTLP ingest: decoded spans become runs, steps and feedback through the ingest
service, with the REST API's validation, limits and redaction.

This module only orders the work; validation is `learning.services.payloads`, every
write a function of `learning.services.runs`:
1. the export's spans are grouped by trace, and the traces that already have a run
   are read;
2. each trace is mapped (`learning.otel.mapping`) and validated — new runs as one
   batch (`runs_clean`, so the batch limit holds), the others with `run_clean`. An
   export with an invalid trace stores nothing (`OtlpInvalid` names the trace, the
   span and the field or attribute);
3. in one transaction: new runs in one `runs_ingest`; for a trace whose run exists,
   its new spans as steps (`run_steps_attach`: a retried export adds nothing, and a
   finished run takes late spans), and when the run span arrives, the run's identity
   (`run_identity_update`) and outcome (`run_complete`); then evaluations as feedback
   (`feedback_add_once`: once per evaluation, however often it is exported).

What is accepted but worth saying — evaluations that cannot be feedback, late spans —
comes back as warnings, which the endpoint sends as OTLP's partial-success message.
"""

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from learning.models import Namespace, RunStatus, Trajectory
from learning.otel.conventions import MappingError
from learning.otel.decode import OtelSpan
from learning.otel.mapping import (
    PLACEHOLDER_TASK,
    Evaluation,
    StoredRun,
    TracePlan,
    is_agent_trace,
    trace_plan,
)
from learning.services.payloads import (
    PayloadInvalid,
    feedback_clean,
    outcome_clean,
    run_clean,
    runs_clean,
)
from learning.services.runs import (
    IDENTITY_FIELDS,
    RunNotRunning,
    feedback_add_once,
    run_complete,
    run_identity_update,
    run_steps_attach,
    runs_ingest,
)

OUTCOME_KEYS = (
    "status",
    "success_score",
    "error_message",
    "duration_ms",
    "playbook_versions",
    "metrics",
)
MAX_PROBLEMS_SHOWN = 20


class OtlpInvalid(Exception):
    """Spans that decode but cannot be stored within the limits; nothing was."""

    def __init__(self, problems: list[str]):
        shown = problems[:MAX_PROBLEMS_SHOWN]
        more = len(problems) - len(shown)
        text = "; ".join(shown) + (f"; and {more} more" if more else "")
        super().__init__(text)
        self.problems = problems


@dataclass
class OtelIngestResult:
    spans_received: int = 0
    runs_created: list[str] = field(default_factory=list)
    runs_updated: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Trace:
    """A trace of the export, mapped and validated."""

    plan: TracePlan
    run: Trajectory | None  # the stored run, if any
    clean: dict[str, Any] = field(default_factory=dict)
    feedback: list[dict[str, Any]] = field(default_factory=list)


def otel_traces_ingest(
    *, namespace: Namespace, agent: str, spans: list[OtelSpan]
) -> OtelIngestResult:
    """Store what decoded OTLP spans say (one run per agent trace)."""
    result = OtelIngestResult(spans_received=len(spans))
    traces = _traces_check(namespace=namespace, spans=spans, result=result)
    with transaction.atomic():
        _new_runs_store(namespace=namespace, agent=agent, traces=traces, result=result)
        for trace in traces:
            if trace.run is not None and str(trace.run.id) not in result.runs_created:
                _existing_run_update(trace, result)
        for trace in traces:
            for data in trace.feedback:
                feedback_add_once(run=trace.run, data=data, key="otel")
    return result


# --- mapping and validation --------------------------------------------------------


def _stored(run: Trajectory | None) -> StoredRun | None:
    if run is None:
        return None
    otel = run.metrics.get("otel") if isinstance(run.metrics, dict) else None
    otel = otel if isinstance(otel, dict) else {}
    return StoredRun(
        id=str(run.id),
        finished=run.status != RunStatus.RUNNING,
        root_span_id=str(otel.get("span_id") or ""),
        parent_span_id=str(otel.get("parent_span_id") or ""),
        placeholder_task=run.task_description
        == PLACEHOLDER_TASK.format(trace_id=str(otel.get("trace_id") or "")),
    )


def _traces_check(
    *, namespace: Namespace, spans: list[OtelSpan], result: OtelIngestResult
) -> list[_Trace]:
    by_trace: dict[str, list[OtelSpan]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    stored = {
        run.external_id: run
        for run in Trajectory.objects.filter(
            namespace=namespace,
            external_id__in=[f"otel-{trace_id}" for trace_id in by_trace],
        )
    }
    traces, problems = [], []
    for trace_id in sorted(by_trace):  # one lock order for every export
        trace_spans = by_trace[trace_id]
        run = stored.get(f"otel-{trace_id}")
        if run is None and not is_agent_trace(trace_spans):
            continue  # not an agent's trace (a plain HTTP request): accepted, ignored
        try:
            plan = trace_plan(trace_spans, stored=_stored(run))
        except MappingError as exc:
            problems.append(f"trace {trace_id}: {exc}")
            continue
        traces.append(_Trace(plan=plan, run=run))
    problems += _runs_validate(traces)
    if problems:
        raise OtlpInvalid(problems)
    for trace in traces:
        trace.feedback = _feedback_validate(trace.plan.evaluations, result)
    return traces


def _runs_validate(traces: list[_Trace]) -> list[str]:
    problems = []
    new = [t for t in traces if t.run is None]
    if new:
        try:
            for trace, clean in zip(new, runs_clean([t.plan.run for t in new])):
                trace.clean = clean
        except PayloadInvalid as exc:
            problems += _batch_problems(new, exc.errors)
    for trace in traces:
        if trace.run is not None:
            try:
                trace.clean = run_clean(trace.plan.run)
            except PayloadInvalid as exc:
                problems += _problems(trace.plan, exc.errors)
    return problems


def _batch_problems(new: list[_Trace], errors: dict) -> list[str]:
    by_index = errors.get("runs")
    if not isinstance(by_index, dict):  # the batch itself: too many new traces
        return [f"resourceSpans: {_message(by_index)} (new traces per export)"]
    return [
        problem
        for index, run_errors in by_index.items()
        for problem in _problems(new[int(index)].plan, run_errors)
    ]


def _message(detail: Any) -> str:
    while isinstance(detail, (list, dict)) and detail:
        detail = detail[0] if isinstance(detail, list) else next(iter(detail.values()))
    return str(detail)


def _problems(plan: TracePlan, errors: dict) -> list[str]:
    """PayloadInvalid's errors, named by trace, span and attribute."""
    prefix = f"trace {plan.trace_id}"
    out = []
    for name, detail in errors.items():
        if name == "steps" and isinstance(detail, dict):
            for index, step_errors in detail.items():
                span = plan.step_spans[int(index)]
                for step_field, messages in step_errors.items():
                    out.append(
                        f"{prefix}: {span.label}: {step_field}: {_message(messages)}"
                    )
        else:
            source = plan.sources.get(name)
            where = f"{name} (attribute {source})" if source else name
            out.append(f"{prefix}: {where}: {_message(detail)}")
    return out


def _feedback_validate(
    evaluations: list[Evaluation], result: OtelIngestResult
) -> list[dict[str, Any]]:
    """Evaluations as valid feedback; one that cannot be is a warning, not a reason
    to refuse the spans."""
    out = []
    for evaluation in evaluations:
        try:
            out.append(feedback_clean(evaluation.data))
        except PayloadInvalid as exc:
            problem = "; ".join(f"{k}: {_message(v)}" for k, v in exc.errors.items())
            result.warnings.append(
                f"{evaluation.where} not recorded as feedback ({problem} A score "
                "must be 0–1, or a label such as pass/fail.)"
            )
    return out


# --- storing -----------------------------------------------------------------------


def _new_runs_store(
    *,
    namespace: Namespace,
    agent: str,
    traces: list[_Trace],
    result: OtelIngestResult,
) -> None:
    new = [t for t in traces if t.run is None]
    if not new:
        return
    stored = runs_ingest(namespace=namespace, agent=agent, runs=[t.clean for t in new])
    for trace, ingested in zip(new, stored):
        trace.run = ingested.run
        if ingested.created:
            result.runs_created.append(str(ingested.run.id))
        # else another export of this trace created it meanwhile: extended below


def _existing_run_update(trace: _Trace, result: OtelIngestResult) -> None:
    run, plan, clean = trace.run, trace.plan, trace.clean
    result.runs_updated.append(str(run.id))
    finished = run.status != RunStatus.RUNNING
    attached = run_steps_attach(run=run, steps=clean.get("steps", []), key="span_id")
    if attached and finished:
        result.warnings.append(
            f"trace {plan.trace_id}: {len(attached)} span(s) arrived after run "
            f"{run.id} finished; attached to it as late steps"
        )
    if finished or plan.root is None:
        return
    identity = {key: clean[key] for key in IDENTITY_FIELDS if clean.get(key)}
    stored = _stored(run)
    if not plan.task_found and not stored.placeholder_task:
        identity.pop("task_description", None)  # keep the first user message seen
    identity["started_at"] = clean.get("started_at")
    try:
        run = run_identity_update(run=run, data=identity)
        outcome = {key: clean[key] for key in OUTCOME_KEYS if key in clean}
        run_complete(run=run, data=outcome_clean({**outcome, **_stored_totals(run)}))
    except RunNotRunning:
        pass  # another export of this trace finished it first


def _stored_totals(run: Trajectory) -> dict[str, Any]:
    """tokens_used and cost_usd over every stored step (a run's spans arrive in
    several exports)."""
    tokens, costs = [], []
    for step_tokens, cost in run.steps.values_list("tokens", "result__cost_usd"):
        if step_tokens is not None:
            tokens.append(step_tokens)
        if isinstance(cost, (int, float)) and not isinstance(cost, bool):
            costs.append(cost)
    totals: dict[str, Any] = {}
    if tokens:
        totals["tokens_used"] = sum(tokens)
    if costs:
        totals["cost_usd"] = sum(costs)
    return totals
