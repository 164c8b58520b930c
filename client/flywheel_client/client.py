"""The Flywheel HTTP client (standard library only)."""

from __future__ import annotations

import json
import logging
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.client import HTTPException
from types import TracebackType
from typing import Any, Callable, Mapping

logger = logging.getLogger("flywheel_client")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A request that was certainly not processed: safe to retry even when not idempotent.
NOT_PROCESSED_STATUSES = frozenset({429, 503})
STEP_TYPES = ("action", "decision", "observation", "tool_call", "message")


class FlywheelError(Exception):
    """Base class of the client's errors."""


class TransportError(FlywheelError):
    """The server could not be reached (after retries)."""


class ApiError(FlywheelError):
    """The server answered with an error status; ``body`` is its JSON error."""

    def __init__(self, status: int, body: Any, method: str, path: str):
        self.status = status
        self.body = body
        detail = body.get("detail", body) if isinstance(body, dict) else body
        super().__init__(f"{method} {path} -> {status}: {detail}")

    @property
    def field_errors(self) -> dict[str, Any]:
        """The per-field problems of a 400 (``{"field": ["problem"]}``)."""
        if isinstance(self.body, dict):
            return {k: v for k, v in self.body.items() if k not in ("detail", "code")}
        return {}


@dataclass(frozen=True)
class Context:
    """Recalled playbook context for one task."""

    playbook: str
    version: int
    context: str
    items: list[dict[str, Any]] = field(default_factory=list)
    tokens: int = 0

    @property
    def version_ref(self) -> str:
        """``"slug@n"``, the form runs report in ``playbook_versions``."""
        return f"{self.playbook}@{self.version}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class Flywheel:
    """A client for one namespace (the token's).

    ``base_url`` and ``token`` default to the ``FLYWHEEL_URL`` and ``FLYWHEEL_TOKEN``
    environment variables. Requests that fail with 429, 5xx or a connection error are
    retried with exponential backoff and jitter (``Retry-After`` is honoured). Posting
    a run is idempotent through its ``external_id``, so it is always retried; feedback
    and proposals are retried only when the server certainly did not process them
    (429, 503, connection refused).
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        agent: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        base_url = base_url or os.environ.get("FLYWHEEL_URL", "")
        token = token or os.environ.get("FLYWHEEL_TOKEN", "")
        if not base_url:
            raise ValueError("base_url is required (or set FLYWHEEL_URL)")
        if not token:
            raise ValueError("token is required (or set FLYWHEEL_TOKEN)")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.agent = agent
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep

    def __repr__(self) -> str:  # never show the token
        return f"Flywheel({self.base_url!r})"

    # --- transport -------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        """Send one API request and return the decoded JSON answer."""
        if idempotent is None:
            idempotent = method.upper() in ("GET", "HEAD", "PUT", "DELETE")
        url = f"{self.base_url}/api/v1/{path.lstrip('/')}"
        query = {k: v for k, v in (params or {}).items() if v is not None}
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = (
            None if json_body is None else json.dumps(json_body, default=str).encode()
        )
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/json",
            "User-Agent": "flywheel-client/0.1",
        }
        if data is not None:
            headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            request = urllib.request.Request(
                url, data=data, headers=headers, method=method
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
                    return json.loads(raw) if raw else None
            except urllib.error.HTTPError as exc:
                raw = exc.read()
                try:
                    body: Any = json.loads(raw) if raw else {}
                except ValueError:
                    body = {"detail": raw.decode("utf-8", "replace")[:500]}
                retryable = exc.code in (
                    RETRY_STATUSES if idempotent else NOT_PROCESSED_STATUSES
                )
                if not retryable or attempt >= self.max_retries:
                    raise ApiError(exc.code, body, method, path) from None
                delay = self._delay(attempt, exc.headers.get("Retry-After"))
                logger.info(
                    "flywheel %s %s -> %s; retrying in %.2fs",
                    method,
                    path,
                    exc.code,
                    delay,
                )
            except (urllib.error.URLError, HTTPException, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                refused = isinstance(reason, ConnectionRefusedError)
                if not (idempotent or refused) or attempt >= self.max_retries:
                    raise TransportError(f"{method} {path}: {reason}") from exc
                delay = self._delay(attempt, None)
                logger.info(
                    "flywheel %s %s failed (%s); retrying in %.2fs",
                    method,
                    path,
                    reason,
                    delay,
                )
            self._sleep(delay)
            attempt += 1

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(self.max_backoff, max(0.0, float(retry_after)))
            except ValueError:
                pass
        base = min(self.max_backoff, self.backoff * (2.0**attempt))
        return base / 2 + random.uniform(0, base / 2)

    def _object(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        body = self.request(method, path, **kwargs)
        if not isinstance(body, dict):
            raise FlywheelError(
                f"{method} {path}: expected a JSON object, got {body!r:.200}"
            )
        return body

    # --- runs ------------------------------------------------------------------

    def post_run(self, run: Mapping[str, Any]) -> dict[str, Any]:
        """Post a whole run (idempotent on ``external_id``); returns the stored run."""
        payload = dict(run)
        if self.agent and "agent" not in payload:
            payload["agent"] = self.agent
        return self._object(
            "POST",
            "runs/",
            json_body=payload,
            idempotent=bool(payload.get("external_id")),
        )

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self._object("GET", f"runs/{run_id}/")

    def run(
        self,
        task: str,
        *,
        task_type: str = "",
        external_id: str | None = None,
        user_id: str = "",
        session_id: str = "",
        playbook_versions: list[str] | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> RunRecorder:
        """Record a run: ``with client.run("task") as run: ...``. The run is posted
        when the block ends; an exception marks it failed (and is re-raised)."""
        return RunRecorder(
            self,
            task=task,
            task_type=task_type,
            external_id=external_id or f"fwc-{uuid.uuid4()}",
            user_id=user_id,
            session_id=session_id,
            playbook_versions=list(playbook_versions or []),
            metrics=dict(metrics or {}),
        )

    def feedback(
        self,
        run_id: str,
        score: float,
        *,
        feedback_type: str = "human",
        source: str = "",
        message: str = "",
        metrics: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Add feedback to a run; the answer carries the new ``effective_score``."""
        body: dict[str, Any] = {"feedback_type": feedback_type, "score": score}
        if source:
            body["source"] = source
        if message:
            body["message"] = message
        if metrics:
            body["metrics"] = metrics
        return self._object(
            "POST", f"runs/{run_id}/feedback/", json_body=body, idempotent=False
        )

    # --- playbooks and candidates ----------------------------------------------

    def recall(
        self,
        playbook: str,
        *,
        task: str,
        task_type: str | None = None,
        budget_tokens: int | None = None,
        session_id: str | None = None,
        run: str | None = None,
    ) -> Context:
        """Ask for the playbook's context for a task, to paste into a prompt.
        ``session_id`` / ``run`` (the run's external_id) link the recall to the run,
        which lets the quality gate judge the version by how its runs end."""
        body = self._object(
            "GET",
            f"playbooks/{urllib.parse.quote(playbook, safe='')}/context/",
            params={
                "task": task,
                "task_type": task_type or None,
                "budget_tokens": budget_tokens,
                "session_id": session_id or None,
                "run": run,
            },
        )
        return Context(
            playbook=body.get("playbook", playbook),
            version=int(body["version"]),
            context=body.get("context", ""),
            items=list(body.get("items", [])),
            tokens=int(body.get("tokens") or 0),
        )

    def propose(
        self,
        *,
        kind: str,
        content: str,
        rationale: str = "",
        confidence: float = 0.5,
        playbook: str | None = None,
        evidence_runs: list[str] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Propose a learning candidate (audited, then reviewed). The server merges a
        repeat of a pending proposal into it, so a retried proposal is harmless."""
        body: dict[str, Any] = {
            "kind": kind,
            "content": content,
            "rationale": rationale,
            "confidence": confidence,
            **extra,
        }
        if playbook is not None:
            body["playbook"] = playbook
        if evidence_runs:
            body["evidence_runs"] = [str(r) for r in evidence_runs]
        return self._object("POST", "candidates/", json_body=body, idempotent=True)


class RunRecorder:
    """Collects a run's steps and outcome; posts it once when the block ends."""

    def __init__(
        self,
        client: Flywheel,
        *,
        task: str,
        task_type: str,
        external_id: str,
        user_id: str,
        session_id: str,
        playbook_versions: list[str],
        metrics: dict[str, Any],
    ) -> None:
        self.client = client
        self.task = task
        self.task_type = task_type
        self.external_id = external_id
        self.user_id = user_id
        self.session_id = session_id
        self.playbook_versions = playbook_versions
        self.metrics = metrics
        self.steps: list[dict[str, Any]] = []
        self.status: str | None = None
        self.success_score: float | None = None
        self.error_message = ""
        self.tokens_used: int | None = None
        self.cost_usd: float | None = None
        self.run: dict[str, Any] | None = None  # the stored run, once posted
        self._started = 0.0
        self._started_at: str | None = None

    @property
    def id(self) -> str | None:
        return self.run["id"] if self.run else None

    def __enter__(self) -> RunRecorder:
        self._started = time.monotonic()
        self._started_at = _now()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self.fail(f"{exc_type.__name__ if exc_type else 'Error'}: {exc}"[:10_000])
        try:
            self.run = self.client.post_run(self.payload())
        except FlywheelError:
            if exc is None:
                raise
            # Don't hide the agent's own exception behind a recording failure.
            logger.exception("flywheel: could not record run %s", self.external_id)

    # --- steps -----------------------------------------------------------------

    def step(
        self,
        type: str,
        description: str,
        *,
        tool: str | None = None,
        result: Any = None,
        tokens: int | None = None,
    ) -> dict[str, Any]:
        if type not in STEP_TYPES:
            raise ValueError(f"step type must be one of {', '.join(STEP_TYPES)}")
        step: dict[str, Any] = {
            "type": type,
            "description": description,
            "started_at": _now(),
        }
        if tool:
            step["tool"] = tool
        if result is not None:
            step["result"] = result
        if tokens is not None:
            step["tokens"] = tokens
        self.steps.append(step)
        return step

    def message(
        self, role: str, text: str, *, tokens: int | None = None
    ) -> dict[str, Any]:
        return self.step("message", f"{role}: {text}", tokens=tokens)

    def tool_call(
        self, tool: str, arguments: Mapping[str, Any] | None = None, result: Any = None
    ) -> dict[str, Any]:
        args = ", ".join(f"{k}={v}" for k, v in (arguments or {}).items())
        payload = {"arguments": dict(arguments or {}), "output": result}
        return self.step("tool_call", f"{tool}({args})", tool=tool, result=payload)

    def observe(self, text: str) -> dict[str, Any]:
        return self.step("observation", text)

    def decide(self, text: str) -> dict[str, Any]:
        return self.step("decision", text)

    def add_usage(self, *, tokens: int = 0, cost_usd: float = 0.0) -> None:
        self.tokens_used = (self.tokens_used or 0) + tokens
        if cost_usd:
            self.cost_usd = (self.cost_usd or 0.0) + cost_usd

    def recall(self, playbook: str, *, budget_tokens: int | None = None) -> Context:
        """Recall context for this run's task, linked to this run, and note the
        version in ``playbook_versions``."""
        context = self.client.recall(
            playbook,
            task=self.task,
            task_type=self.task_type,
            budget_tokens=budget_tokens,
            session_id=self.session_id,
            run=self.external_id,
        )
        self.use(context)
        return context

    def use(self, context: Context | str) -> None:
        """Note a playbook version the run used (``Context`` or ``"slug@n"``)."""
        ref = context.version_ref if isinstance(context, Context) else context
        if ref not in self.playbook_versions:
            self.playbook_versions.append(ref)

    # --- outcome ---------------------------------------------------------------

    def succeed(self, score: float = 1.0) -> None:
        self.status, self.success_score = "success", score

    def partial(self, score: float) -> None:
        self.status, self.success_score = "partial", score

    def fail(self, error: str = "", score: float = 0.0) -> None:
        self.status, self.success_score, self.error_message = "failure", score, error

    def payload(self) -> dict[str, Any]:
        """The run as ``POST /api/v1/runs/`` takes it."""
        duration_ms = (
            int((time.monotonic() - self._started) * 1000) if self._started else None
        )
        body: dict[str, Any] = {
            "external_id": self.external_id,
            "task_description": self.task,
            "status": self.status or "success",
            "steps": self.steps,
            "metrics": self.metrics,
            "playbook_versions": self.playbook_versions,
            "started_at": self._started_at,
            "completed_at": _now(),
        }
        optional = {
            "task_type": self.task_type,
            "user_id": self.user_id,
            "session_id": self.session_id,
            "success_score": self.success_score,
            "error_message": self.error_message,
            "tokens_used": self.tokens_used,
            "cost_usd": self.cost_usd,
            "duration_ms": duration_ms,
        }
        body.update({k: v for k, v in optional.items() if v not in (None, "")})
        return body
