"""Reflection on any OpenAI-compatible Chat Completions server (OpenAI itself, or a
self-hosted server speaking its API) through the official `openai` SDK, with the same
diagnosis prompt, schema and parser as the Claude reflector
(`learning.reflectors.prompt`).

Structured output is a forced function call; a server that rejects `tools` (400/422)
is asked again with a JSON-schema `response_format`, and this reflector remembers to
use that from then on. Any failure (HTTP errors, timeouts, malformed output) falls
back to the offline result, marked `fallback=True` with the reason."""

import json
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

# The SDK refuses to start without a key; local servers ignore the header.
NO_KEY = "unused"


def _answer_data(message) -> dict:
    """The structured answer of a chat completion message: the forced function call's
    arguments, else a JSON document in the content."""
    for call in getattr(message, "tool_calls", None) or []:
        function = getattr(call, "function", None)
        if getattr(function, "name", None) == TOOL_NAME:
            return _loads(function.arguments, "the function call's arguments")
    content = getattr(message, "content", None)
    if isinstance(content, str) and content.strip():
        return _loads(content, "the message content")
    raise MalformedOutput(f"the model neither called {TOOL_NAME} nor answered JSON")


def _loads(text, where: str) -> dict:
    if isinstance(text, dict):
        return text
    try:
        data = json.loads(_strip_fence(str(text or "")))
    except ValueError as exc:
        raise MalformedOutput(f"{where} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedOutput(f"{where} is not a JSON object")
    return data


def _strip_fence(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    return text


class OpenAICompatibleReflector:
    def __init__(
        self,
        *,
        client=None,
        model: str | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
    ):
        self.model = model or settings.OPENAI_MODEL
        self.name = self.model or "openai"
        self._client = client
        self._max_retries = (
            settings.OPENAI_MAX_RETRIES if max_retries is None else max_retries
        )
        self._timeout = timeout or settings.OPENAI_TIMEOUT
        self._tools_rejected = False
        self.offline = OfflineReflector()

    @property
    def client(self):
        if self._client is None:
            import openai

            self._client = openai.OpenAI(
                api_key=settings.OPENAI_API_KEY or NO_KEY,
                base_url=settings.OPENAI_BASE_URL,
                max_retries=self._max_retries,
                timeout=self._timeout,
            )
        return self._client

    def messages(self, run: RunView, peers: list[RunView]) -> list[dict]:
        # The system prompt comes first and is the same for every run, so servers
        # with automatic prefix caching reuse it.
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": run_prompt(run, peers)},
        ]

    def _with_tools(self, messages: list[dict]):
        return self.client.chat.completions.create(
            model=self.model,
            messages=messages,
            tools=[
                {
                    "type": "function",
                    "function": {
                        "name": TOOL_NAME,
                        "description": TOOL_DESCRIPTION,
                        "parameters": REFLECTION_SCHEMA,
                    },
                }
            ],
            tool_choice={"type": "function", "function": {"name": TOOL_NAME}},
        )

    def _with_json_schema(self, messages: list[dict]):
        return self.client.chat.completions.create(
            model=self.model,
            messages=messages,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": TOOL_NAME, "schema": REFLECTION_SCHEMA},
            },
        )

    def complete(self, run: RunView, peers: list[RunView]):
        """One chat completion for the run: a forced function call, or the JSON-schema
        response format once the server has refused tools."""
        import openai

        if not self.model:
            raise MalformedOutput("OPENAI_MODEL is not set")
        messages = self.messages(run, peers)
        if not self._tools_rejected:
            try:
                return self._with_tools(messages)
            except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                logger.info(
                    "%s refused function calling (%s); using response_format",
                    self.model,
                    exc.__class__.__name__,
                )
                self._tools_rejected = True
        return self._with_json_schema(messages)

    def _parse(self, completion, run: RunView):
        choices = getattr(completion, "choices", None) or []
        if not choices:
            raise MalformedOutput("the completion has no choices")
        return reflection_parse(_answer_data(choices[0].message), run=run)

    def _usage(self, completion) -> tuple[int, int, float]:
        usage = getattr(completion, "usage", None)
        tokens_in = getattr(usage, "prompt_tokens", 0) or 0
        tokens_out = getattr(usage, "completion_tokens", 0) or 0
        cost = (
            tokens_in * settings.OPENAI_PRICE_INPUT
            + tokens_out * settings.OPENAI_PRICE_OUTPUT
        ) / 1e6
        return tokens_in, tokens_out, round(cost, 6)

    def reflect(self, *, run: RunView, peers: list[RunView]) -> ReflectionResult:
        try:
            completion = self.complete(run, peers)
            lessons, tags, summary = self._parse(completion, run)
        except Exception as exc:  # noqa: BLE001 - any model failure: offline fallback
            reason = f"{exc.__class__.__name__}: {exc}"[:2000]
            logger.warning(
                "OpenAI-compatible reflection of run %s fell back to offline: %s",
                run.id,
                reason,
            )
            result = self.offline.reflect(run=run, peers=peers)
            result.fallback, result.fallback_reason = True, reason
            return result
        tokens_in, tokens_out, cost = self._usage(completion)
        return ReflectionResult(
            lessons=lessons,
            reflector=self.name,
            prompt_version=PROMPT_VERSION,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cost_usd=cost,
            summary=summary,
            strategy_tags=tags,
        )

    def reflect_batch(self, *, runs: list[RunView]) -> ReflectionResult:
        """Compatible servers have no batch API: each run is reflected in turn, within
        OPENAI_BATCH_WAIT seconds, and lessons found in two or more runs are kept with
        their frequency. When no run could be reflected, the offline batch result is
        stored as a fallback."""
        deadline = time.monotonic() + settings.OPENAI_BATCH_WAIT
        found: dict = {}
        tokens_in = tokens_out = done = 0
        cost, errors = 0.0, []
        for run in runs:
            if time.monotonic() > deadline:
                errors.append("time budget spent")
                break
            try:
                completion = self.complete(run, runs)
                lessons, _tags, _summary = self._parse(completion, run)
            except Exception as exc:  # noqa: BLE001 - one run's failure skips it
                errors.append(f"{exc.__class__.__name__}: {exc}")
                continue
            done += 1
            t_in, t_out, c = self._usage(completion)
            tokens_in, tokens_out, cost = tokens_in + t_in, tokens_out + t_out, cost + c
            for lesson in lessons:
                if lesson.kind not in ("preference", "durable_fact"):
                    found.setdefault(lesson_norm(lesson), []).append((run, lesson))
        if not done:
            result = self.offline.reflect_batch(runs=runs)
            result.fallback = True
            result.fallback_reason = "; ".join(errors)[:2000] or "no run reflected"
            return result
        return ReflectionResult(
            lessons=batch_patterns(found, runs),
            reflector=self.name,
            prompt_version=f"batch-{PROMPT_VERSION}",
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cost_usd=round(cost, 6),
            summary=f"{done} of {len(runs)} runs reflected; {len(errors)} failed",
        )
