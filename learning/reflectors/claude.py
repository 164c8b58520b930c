"""The Claude reflector: the official `anthropic` SDK, structured output through a forced
tool call, the diagnosis prompt of `learning.reflectors.prompt` as a cached system
prefix (over 1,024 tokens, so the cache takes), Message Batches for batch reflection.
Any model failure (HTTP errors, timeouts, malformed tool output) falls back to the
offline result, marked `fallback=True` with the reason: a run is never left
unreflected."""

import logging
import time

from django.conf import settings

from learning.reflectors.base import ReflectionResult, RunView
from learning.reflectors.offline import OfflineReflector
from learning.reflectors.prompt import (
    PROMPT_VERSION,
    REFLECTION_SCHEMA,
    SYSTEM_PROMPT,
    TOOL_DESCRIPTION,
    TOOL_NAME,
    MalformedOutput,
    batch_patterns,
    lesson_norm,
    reflection_parse,
    run_prompt,
)

logger = logging.getLogger(__name__)

# USD per million tokens: (input, output). Cache writes cost 1.25x input, reads 0.1x.
PRICES = {
    "claude-opus": (15.0, 75.0),
    "claude-sonnet": (3.0, 15.0),
    "claude-haiku": (0.8, 4.0),
}


def _price(model: str) -> tuple[float, float]:
    for prefix, price in PRICES.items():
        if model.startswith(prefix):
            return price
    return PRICES["claude-sonnet"]


def usage_cost(model: str, usage) -> tuple[int, int, float]:
    """(input tokens incl. cache, output tokens, USD) from a response's usage."""
    p_in, p_out = _price(model)
    plain = getattr(usage, "input_tokens", 0) or 0
    written = getattr(usage, "cache_creation_input_tokens", 0) or 0
    read = getattr(usage, "cache_read_input_tokens", 0) or 0
    out = getattr(usage, "output_tokens", 0) or 0
    cost = (
        plain * p_in + written * p_in * 1.25 + read * p_in * 0.1 + out * p_out
    ) / 1e6
    return plain + written + read, out, round(cost, 6)


def parse_tool_output(content, *, run: RunView):
    """(lessons, strategy tags, diagnosis) from the forced tool call; MalformedOutput
    when it is missing or does not follow the schema."""
    block = next(
        (
            b
            for b in content or []
            if getattr(b, "type", None) == "tool_use"
            and getattr(b, "name", None) == TOOL_NAME
        ),
        None,
    )
    if block is None:
        raise MalformedOutput(f"the model did not call {TOOL_NAME}")
    return reflection_parse(block.input, run=run)


class ClaudeReflector:
    def __init__(
        self,
        *,
        client=None,
        model: str | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
    ):
        self.model = model or settings.ANTHROPIC_MODEL
        self.name = self.model
        self._client = client
        self._max_retries = (
            getattr(settings, "ANTHROPIC_MAX_RETRIES", 2)
            if max_retries is None
            else max_retries
        )
        self._timeout = timeout or settings.ANTHROPIC_TIMEOUT
        self.offline = OfflineReflector()

    @property
    def client(self):
        if self._client is None:
            import anthropic

            self._client = anthropic.Anthropic(
                api_key=settings.ANTHROPIC_API_KEY,
                base_url=settings.ANTHROPIC_BASE_URL,
                max_retries=self._max_retries,
                timeout=self._timeout,
            )
        return self._client

    def request_params(self, run: RunView, peers: list[RunView]) -> dict:
        """The Messages request: the tool definition and the system prompt are the
        same for every run, so with the cache breakpoint on the system block the whole
        prefix (tools, then system) is cached and read back by the next reflection."""
        return {
            "model": self.model,
            "max_tokens": 4096,
            "tools": [
                {
                    "name": TOOL_NAME,
                    "description": TOOL_DESCRIPTION,
                    "input_schema": REFLECTION_SCHEMA,
                }
            ],
            "tool_choice": {"type": "tool", "name": TOOL_NAME},
            "system": [
                {
                    "type": "text",
                    "text": SYSTEM_PROMPT,
                    "cache_control": {"type": "ephemeral"},
                }
            ],
            "messages": [{"role": "user", "content": run_prompt(run, peers)}],
        }

    def _fallback(self, *, run, peers, reason: str) -> ReflectionResult:
        logger.warning(
            "Claude reflection of run %s fell back to offline: %s", run.id, reason
        )
        result = self.offline.reflect(run=run, peers=peers)
        result.fallback, result.fallback_reason = True, reason[:2000]
        return result

    def reflect(self, *, run: RunView, peers: list[RunView]) -> ReflectionResult:
        try:
            message = self.client.messages.create(**self.request_params(run, peers))
            lessons, tags, summary = parse_tool_output(message.content, run=run)
        except Exception as exc:  # noqa: BLE001 - any model failure: offline fallback
            return self._fallback(
                run=run, peers=peers, reason=f"{exc.__class__.__name__}: {exc}"
            )
        tokens_in, tokens_out, cost = usage_cost(self.model, message.usage)
        return ReflectionResult(
            lessons=lessons,
            reflector=self.model,
            prompt_version=PROMPT_VERSION,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cost_usd=cost,
            summary=summary,
            strategy_tags=tags,
        )

    def reflect_batch(
        self,
        *,
        runs: list[RunView],
        wait_seconds: float | None = None,
        poll_seconds: float = 2.0,
    ) -> ReflectionResult:
        """One Message Batches request per run; lessons found in two or more runs are
        kept with their frequency. If the batch does not end within `wait_seconds` (the
        task's time budget) or fails, the offline batch result is stored as a fallback.
        Strategy tags are left to single-run reflection, so a run's verdicts count
        once."""
        wait = (
            getattr(settings, "ANTHROPIC_BATCH_WAIT", 90)
            if wait_seconds is None
            else wait_seconds
        )
        by_custom = {f"run-{i}": run for i, run in enumerate(runs)}
        batch_id = None
        try:
            batch = self.client.messages.batches.create(
                requests=[
                    {"custom_id": custom_id, "params": self.request_params(run, runs)}
                    for custom_id, run in by_custom.items()
                ]
            )
            batch_id = batch.id
            deadline = time.monotonic() + wait
            while batch.processing_status != "ended":
                if time.monotonic() > deadline:
                    raise TimeoutError(f"batch {batch_id} did not end within {wait:g}s")
                time.sleep(poll_seconds)
                batch = self.client.messages.batches.retrieve(batch_id)
            found, usage, errors = self._batch_results(batch_id, by_custom)
            if errors == len(runs):
                raise MalformedOutput("no request of the batch succeeded")
        except Exception as exc:  # noqa: BLE001 - fall back to the offline batch
            if batch_id is not None:
                try:
                    self.client.messages.batches.cancel(batch_id)
                except Exception:  # noqa: BLE001
                    pass
            result = self.offline.reflect_batch(runs=runs)
            result.fallback = True
            result.fallback_reason = f"{exc.__class__.__name__}: {exc}"[:2000]
            return result
        tokens_in, tokens_out, cost = usage
        return ReflectionResult(
            lessons=batch_patterns(found, runs),
            reflector=self.model,
            prompt_version=f"batch-{PROMPT_VERSION}",
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cost_usd=round(cost, 6),
            summary=f"batch {batch_id}: {len(runs)} runs, {errors} failed requests",
        )

    def _batch_results(self, batch_id: str, by_custom: dict):
        """(lessons by normalised content, (tokens in, tokens out, USD), errors) of an
        ended batch. Batch requests cost half the price."""
        found: dict[tuple[str, str], list] = {}
        tokens_in = tokens_out = errors = 0
        cost = 0.0
        for entry in self.client.messages.batches.results(batch_id):
            run = by_custom.get(entry.custom_id)
            if run is None or entry.result.type != "succeeded":
                errors += 1
                continue
            message = entry.result.message
            try:
                lessons, _tags, _summary = parse_tool_output(message.content, run=run)
            except MalformedOutput:
                errors += 1
                continue
            t_in, t_out, c = usage_cost(self.model, message.usage)
            tokens_in, tokens_out, cost = (
                tokens_in + t_in,
                tokens_out + t_out,
                cost + c / 2,
            )
            for lesson in lessons:
                if lesson.kind not in ("preference", "durable_fact"):
                    found.setdefault(lesson_norm(lesson), []).append((run, lesson))
        return found, (tokens_in, tokens_out, cost), errors
