"""Flywheel's MCP server on the official `mcp` SDK: tools to recall lessons, record runs
(whole, or start / add steps / finish), add feedback and propose a lesson. Served over
stdio (`python manage.py mcp`) and streamable HTTP at /mcp (`learning.mcp.http`).

The tools are async wrappers that run `learning.mcp.tools` (plain Django code) with
`sync_to_async(thread_sensitive=True)`: under the /mcp view that is the request's own
thread, so database connections are Django's usual per-request ones."""

import json
from typing import Annotated, Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from mcp.server import MCPServer
from mcp.types import CallToolResult, TextContent
from pydantic import Field, StrictFloat, StrictInt, StrictStr

from learning.mcp import tools

INSTRUCTIONS = """Flywheel keeps the lessons learned from earlier runs of your tasks.
Before a task, call recall_lessons with the playbook and the task, and follow the
lessons it returns. Record what you did with record_run (or start_run, add_steps and
finish_run), so that Flywheel can learn from it; report feedback with add_feedback and
propose a lesson you learned with propose_lesson (a reviewer decides)."""

Text = StrictStr
Number = StrictFloat | StrictInt
Steps = Annotated[
    list[dict[str, Any]] | None,
    Field(
        description='Steps in order, each {"type": "message"|"action"|"decision"|'
        '"observation"|"tool_call", "description": text, "tool"?: name, "result"?: '
        'any JSON, "tokens"?: int}.'
    ),
]
Metrics = Annotated[
    dict[str, Any] | None, Field(description="Any JSON object of measurements.")
]
RunId = Annotated[Text, Field(description="The run's id, as record_run returned it.")]


def _text_result(data: dict, text: str | None = None) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text or json.dumps(data, default=str))],
        structured_content=data,
    )


def _caller(*, manage_connections: bool):
    """Runs a `learning.mcp.tools` function off the event loop, in Django's
    thread-sensitive executor (the /mcp request's thread)."""

    def work(fn, kwargs):
        if manage_connections:
            close_old_connections()
        try:
            return fn(**kwargs)
        finally:
            if manage_connections:
                close_old_connections()

    async def call(fn, **kwargs):
        return await sync_to_async(work, thread_sensitive=True)(fn, kwargs)

    return call


def mcp_server_build(*, manage_connections: bool = False) -> MCPServer:
    """The server with its tools. `manage_connections` closes stale database
    connections around each call (a long-lived stdio process has no request cycle to
    do it)."""
    server = MCPServer("flywheel", instructions=INSTRUCTIONS)
    call = _caller(manage_connections=manage_connections)

    # The recall tool comes first: clients that pick "the lessons tool" by name take
    # the first match.
    @server.tool(
        name="recall_lessons",
        description="The lessons a playbook holds for a task: ready-to-paste context "
        "text, ranked by relevance, inside a token budget. Call it before the task.",
    )
    async def recall_lessons(
        playbook: Annotated[Text, Field(description="The playbook's slug.")],
        task: Annotated[Text, Field(description="What you are about to do.")] = "",
        task_type: Annotated[
            Text, Field(description="e.g. airline.change_flight")
        ] = "",
        budget: Annotated[
            StrictInt | None,
            Field(description="Token budget of the context (default 800)."),
        ] = None,
        session_id: Annotated[
            Text, Field(description="Links the recall to your run's session.")
        ] = "",
        run: Annotated[
            Text, Field(description="Your run's external_id, if known.")
        ] = "",
        user_id: Annotated[
            Text | None, Field(description="Add what is known about this user.")
        ] = None,
    ) -> CallToolResult:
        data = await call(
            tools.recall_lessons,
            playbook=playbook,
            task=task,
            task_type=task_type,
            budget=budget,
            session_id=session_id,
            run=run,
            user_id=user_id,
        )
        text = data["context"] or (
            f'No lessons in playbook "{data["playbook"]}" (version '
            f"{data['version']}) for this task yet."
        )
        return _text_result(data, text)

    @server.tool(
        name="record_run",
        description="Record a finished run with its steps and outcome (or, without a "
        "status, start a running one). Posting the same external_id again returns the "
        "stored run, never a duplicate.",
    )
    async def record_run(
        task_description: Text,
        status: Annotated[
            Text | None,
            Field(description="success | failure | partial; leave out to start a run."),
        ] = None,
        steps: Steps = None,
        external_id: Annotated[
            Text | None, Field(description="Your own id for the run (idempotency).")
        ] = None,
        task_type: Text | None = None,
        user_id: Text | None = None,
        session_id: Text | None = None,
        agent: Text | None = None,
        success_score: Annotated[Number | None, Field(description="0 to 1.")] = None,
        error_message: Text | None = None,
        duration_ms: StrictInt | None = None,
        tokens_used: StrictInt | None = None,
        cost_usd: Number | None = None,
        metrics: Metrics = None,
        playbook_versions: Annotated[
            list[Text] | None,
            Field(description='The playbook versions recalled, as "slug@version".'),
        ] = None,
    ) -> CallToolResult:
        payload = tools.given(
            task_description=task_description,
            status=status,
            steps=steps,
            external_id=external_id,
            task_type=task_type,
            user_id=user_id,
            session_id=session_id,
            agent=agent,
            success_score=success_score,
            error_message=error_message,
            duration_ms=duration_ms,
            tokens_used=tokens_used,
            cost_usd=cost_usd,
            metrics=metrics,
            playbook_versions=playbook_versions,
        )
        return _text_result(await call(tools.run_record, payload=payload))

    @server.tool(
        name="start_run",
        description="Start a run (status running); add steps with add_steps and end "
        "it with finish_run. Returns the run's id.",
    )
    async def start_run(
        task_description: Text,
        external_id: Text | None = None,
        task_type: Text | None = None,
        user_id: Text | None = None,
        session_id: Text | None = None,
        agent: Text | None = None,
        steps: Steps = None,
        playbook_versions: list[Text] | None = None,
    ) -> CallToolResult:
        payload = tools.given(
            task_description=task_description,
            external_id=external_id,
            task_type=task_type,
            user_id=user_id,
            session_id=session_id,
            agent=agent,
            steps=steps,
            playbook_versions=playbook_versions,
        )
        return _text_result(await call(tools.run_record, payload=payload))

    @server.tool(name="add_steps", description="Append steps to a running run.")
    async def add_steps(run_id: RunId, steps: Steps) -> CallToolResult:
        return _text_result(await call(tools.run_steps_add, run_id=run_id, steps=steps))

    @server.tool(
        name="finish_run",
        description="Finish a running run with its outcome; Flywheel then decides "
        "whether to reflect on it.",
    )
    async def finish_run(
        run_id: RunId,
        status: Annotated[Text, Field(description="success | failure | partial")],
        success_score: Annotated[Number | None, Field(description="0 to 1.")] = None,
        error_message: Text | None = None,
        duration_ms: StrictInt | None = None,
        tokens_used: StrictInt | None = None,
        cost_usd: Number | None = None,
        metrics: Metrics = None,
        playbook_versions: list[Text] | None = None,
    ) -> CallToolResult:
        payload = tools.given(
            status=status,
            success_score=success_score,
            error_message=error_message,
            duration_ms=duration_ms,
            tokens_used=tokens_used,
            cost_usd=cost_usd,
            metrics=metrics,
            playbook_versions=playbook_versions,
        )
        return _text_result(
            await call(tools.run_finish, run_id=run_id, payload=payload)
        )

    @server.tool(
        name="add_feedback",
        description="Feedback on a run (a score from 0 to 1 and what was wrong or "
        "right); the answer carries the run's new effective score.",
    )
    async def add_feedback(
        run_id: RunId,
        score: Annotated[Number, Field(description="0 to 1.")],
        feedback_type: Annotated[
            Text,
            Field(
                description="human | monitoring | ab_test | production | test | llm_judge"
            ),
        ],
        message: Text | None = None,
        source: Text | None = None,
        metrics: Metrics = None,
    ) -> CallToolResult:
        payload = tools.given(
            score=score,
            feedback_type=feedback_type,
            message=message,
            source=source,
            metrics=metrics,
        )
        return _text_result(
            await call(tools.feedback_record, run_id=run_id, payload=payload)
        )

    @server.tool(
        name="propose_lesson",
        description="Propose a lesson for a playbook (playbooks in agentic or propose "
        "mode): it is audited and waits for a reviewer.",
    )
    async def propose_lesson(
        kind: Annotated[
            Text,
            Field(
                description="strategy_helpful | strategy_harmful | procedure | "
                "preference | durable_fact | patch_skill"
            ),
        ],
        content: Annotated[
            Text | None,
            Field(
                description="The lesson as free text (its polarity and situation are "
                "read from it); or give it in the lesson shape below."
            ),
        ] = None,
        polarity: Annotated[
            Text | None,
            Field(description="do | avoid: follow the directive, or not."),
        ] = None,
        when: Annotated[
            Text | None,
            Field(description='The situation, in general terms ("the user asks …").'),
        ] = None,
        directive: Annotated[
            Text | None,
            Field(description="What to do (or avoid), without a negation of its own."),
        ] = None,
        why: Annotated[Text | None, Field(description="The reason.")] = None,
        rationale: Text | None = None,
        confidence: Annotated[Number | None, Field(description="0 to 1.")] = None,
        playbook: Annotated[
            Text | None, Field(description="The playbook's slug.")
        ] = None,
        task_type: Text | None = None,
        evidence_runs: Annotated[
            list[Text] | None, Field(description="Ids of the runs that show it.")
        ] = None,
        user_id: Text | None = None,
        entity: Text | None = None,
        memory_scope: Annotated[
            Text | None, Field(description="user | namespace (memories)")
        ] = None,
    ) -> CallToolResult:
        payload = tools.given(
            kind=kind,
            content=content,
            polarity=polarity,
            when=when,
            directive=directive,
            why=why,
            rationale=rationale,
            confidence=confidence,
            playbook=playbook,
            task_type=task_type,
            evidence_runs=evidence_runs,
            user_id=user_id,
            entity=entity,
            memory_scope=memory_scope,
        )
        return _text_result(await call(tools.lesson_propose, payload=payload))

    return server
