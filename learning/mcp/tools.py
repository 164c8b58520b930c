"""What each MCP tool does, as plain synchronous functions: thin callers of the services
the REST API calls, with the same validation (`learning.services.payloads` for runs,
steps, outcomes and feedback; the API's serializers for recall queries and proposals),
so the limits and messages are the same, and the same token, namespace and role rules.

Bad input raises `ToolError` whose message names the field, as a 4xx body would
(`steps.0.type: This field is required.`); the MCP layer turns it into an error result
for the agent to read. Nothing here writes half a record: the services are atomic."""

import uuid
from contextvars import ContextVar
from types import SimpleNamespace

from mcp.server.mcpserver.exceptions import ToolError

from learning import selectors
from learning.access import role_for, token_allows, token_lookup
from learning.api.candidates import CandidateProposeInputSerializer
from learning.models import ApiToken, Trajectory
from learning.services import candidates as candidate_services
from learning.services import payloads
from learning.services import runs as run_services
from learning.throttling import IngestRateThrottle
from playbooks import recall
from playbooks import selectors as playbook_selectors
from playbooks.api.serializers import RecallQuerySerializer
from playbooks.models import Playbook

# Who is calling: the ApiToken of this HTTP request (set by the /mcp view), or, over
# stdio, the raw FLYWHEEL_TOKEN, looked up again on every call so a revoked token
# stops working at once.
caller: ContextVar[ApiToken | str | None] = ContextVar(
    "flywheel_mcp_caller", default=None
)


def current_token(action: str) -> ApiToken:
    """The caller's token, if it may take `action` (`learning.access.ACTIONS`, the
    table the REST API and the console read)."""
    value = caller.get()
    token = token_lookup(value) if isinstance(value, str) else value
    if not isinstance(token, ApiToken):
        raise ToolError("Not authenticated: the Flywheel token is invalid or revoked.")
    if not token_allows(token, action):
        raise ToolError(f"This tool needs a token with the '{role_for(action)}' role.")
    return token


def errors_text(errors, *, rename: dict | None = None, path: tuple = ()) -> str:
    """A serializer's errors as one line, each prefixed by the field's path, as the
    REST API's 400 body names them: `steps.0.type: This field is required.`"""
    rename = rename or {}

    def lines(value, path: tuple) -> list[str]:
        if isinstance(value, dict):
            out = []
            for key, item in value.items():
                name = rename.get(key, key) if not path else key
                out += lines(item, path if key == "non_field_errors" else (*path, name))
            return out
        if isinstance(value, list) and any(isinstance(i, dict | list) for i in value):
            out = []
            for i, item in enumerate(value):
                if item:
                    out += lines(item, (*path, str(i)))
            return out
        messages = value if isinstance(value, list) else [value]
        return [f"{'.'.join(path) or 'input'}: {' '.join(str(m) for m in messages)}"]

    return "; ".join(lines(errors, path))


def validated(serializer_class, data: dict, *, rename: dict | None = None) -> dict:
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        raise ToolError(
            "Invalid input: " + errors_text(serializer.errors, rename=rename)
        )
    return serializer.validated_data


def cleaned(clean, data, *, path: tuple = ()):
    """`data` through one of `learning.services.payloads`' cleaners."""
    try:
        return clean(data)
    except payloads.PayloadInvalid as exc:
        raise ToolError(
            "Invalid input: " + errors_text(exc.errors, path=path)
        ) from None


def given(**values) -> dict:
    """The arguments the agent gave (None means "not given", as a missing JSON key)."""
    return {key: value for key, value in values.items() if value is not None}


def _throttle(token: ApiToken) -> None:
    """The REST API's per-token write limit (FLYWHEEL_INGEST_RATE), counted in the
    same place, so a token cannot write faster through MCP than through the API
    (every write tool calls it, as every API write is counted)."""
    throttle = IngestRateThrottle()
    if not throttle.allow_request(SimpleNamespace(method="POST", auth=token), None):
        wait = throttle.wait()
        raise ToolError(
            f"Rate limit: too many writes with this token; retry in {int(wait or 1)} s."
        )


def _run(token: ApiToken, run_id: str) -> Trajectory:
    try:
        return selectors.run_get(
            namespace=token.namespace, run_id=uuid.UUID(str(run_id))
        )
    except (ValueError, Trajectory.DoesNotExist):
        raise ToolError("run_id: no run with this id in your namespace.") from None


def run_summary(run: Trajectory, *, created: bool | None = None) -> dict:
    data = {
        "id": str(run.id),
        "external_id": run.external_id,
        "status": run.status,
        "success_score": run.success_score,
        "effective_score": run.effective_score,
        "step_count": run.steps.count(),
        "reflection": run.reflection_status,
    }
    if created is not None:
        data["created"] = created
    return data


# --- the tools -----------------------------------------------------------------------


def recall_lessons(
    *,
    playbook: str,
    task: str,
    task_type: str,
    budget: int | None,
    session_id: str,
    run: str,
    user_id: str | None,
) -> dict:
    token = current_token("recall")
    data = validated(
        RecallQuerySerializer,
        given(
            task=task,
            task_type=task_type,
            budget_tokens=budget,
            session_id=session_id,
            run=run,
            user_id=user_id,
        ),
        rename={"budget_tokens": "budget"},
    )
    try:
        found = playbook_selectors.playbook_get(
            namespace=token.namespace, slug=playbook
        )
    except Playbook.DoesNotExist:
        raise ToolError(
            f"playbook: no playbook '{playbook}' in your namespace."
        ) from None
    result = recall.playbook_recall(
        playbook=found,
        task=data["task"],
        task_type=data["task_type"],
        budget_tokens=data["budget_tokens"],
        requested_by=f"token:{token.name}",
        session_id=data["session_id"],
        run_external_id=data["run"],
        user_id=data.get("user_id"),
    )
    return result.as_dict()


def run_record(*, payload: dict) -> dict:
    """A run, whole (with a status) or started (without): POST /api/v1/runs/."""
    token = current_token("runs.write")
    data = cleaned(payloads.run_clean, payload)
    _throttle(token)
    try:
        (result,) = run_services.runs_ingest(
            namespace=token.namespace, agent=token.name, runs=[data]
        )
    except run_services.IngestBusy:
        raise ToolError("Busy: other posts hold these runs; retry in 1 s.") from None
    return run_summary(result.run, created=result.created)


def run_steps_add(*, run_id: str, steps) -> dict:
    """POST /api/v1/runs/{id}/steps/."""
    token = current_token("runs.write")
    _throttle(token)
    run = _run(token, run_id)
    steps = cleaned(
        lambda data: payloads.steps_clean(data, allow_empty=False),
        steps,
        path=("steps",),
    )
    try:
        added = run_services.run_steps_append(run=run, steps=steps)
    except run_services.RunNotRunning as exc:
        raise ToolError(f"run_id: {exc}") from None
    return dict(run_summary(run), added=len(added))


def run_finish(*, run_id: str, payload: dict) -> dict:
    """POST /api/v1/runs/{id}/complete/."""
    token = current_token("runs.write")
    _throttle(token)
    run = _run(token, run_id)
    data = cleaned(payloads.outcome_clean, payload)
    try:
        run = run_services.run_complete(run=run, data=data)
    except run_services.RunNotRunning as exc:
        raise ToolError(f"run_id: {exc}") from None
    return run_summary(_run(token, run.id))


def feedback_record(*, run_id: str, payload: dict) -> dict:
    """POST /api/v1/runs/{id}/feedback/."""
    token = current_token("feedback.add")
    _throttle(token)
    run = _run(token, run_id)
    data = cleaned(payloads.feedback_clean, payload)
    feedback, run = run_services.feedback_add(run=run, data=data)
    return {
        "feedback_id": feedback.pk,
        "effective_score": run.effective_score,
        "needs_relearning": run.needs_relearning,
        "relearning_priority": run.relearning_priority,
    }


def lesson_propose(*, payload: dict) -> dict:
    """POST /api/v1/candidates/: audited, then reviewed like every candidate."""
    token = current_token("candidates.propose")
    _throttle(token)
    data = validated(CandidateProposeInputSerializer, payload)
    try:
        candidate, created = candidate_services.candidate_propose(
            namespace=token.namespace, proposed_by=f"token:{token.name}", data=data
        )
    except candidate_services.CandidateInvalid as exc:
        raise ToolError(f"{exc.field}: {exc.message}") from None
    except candidate_services.ProposalRefused as exc:
        raise ToolError(str(exc)) from None
    return {
        "id": candidate.pk,
        "kind": candidate.kind,
        "status": candidate.status,
        "content": candidate.content,
        "polarity": candidate.polarity,
        "playbook": candidate.playbook.slug if candidate.playbook_id else None,
        "created": created,
    }
