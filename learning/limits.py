"""One set of limits for every way in (REST, OTLP, importers, MCP): sizes, counts and
column ranges. Validation (`learning.services.payloads`), the API's schema and the
adapters read them from here, so they cannot disagree."""

MAX_RUNS_PER_BATCH = 1000
MAX_STEPS_PER_RUN = 5000  # per run posted, and per append
MAX_STEP_DESCRIPTION = 200_000
MAX_TASK_DESCRIPTION = 100_000
MAX_ERROR_MESSAGE = 100_000
MAX_FEEDBACK_MESSAGE = 20_000
MAX_ID = 200  # external_id, user_id, session_id, task_type, tool, a playbook version
MAX_AGENT = 100
MAX_PLAYBOOK_VERSIONS = 100
MAX_JSON_DEPTH = 64
# Column ranges: a number the database cannot hold is a 400, never a 500.
MAX_BIGINT = 2**63 - 1
MAX_INT = 2**31 - 1
# Lessons: a candidate's content and a playbook strategy's text share one limit, so
# whatever a reviewer approves can still be edited afterwards.
MAX_LESSON_TEXT = 4000
MAX_LESSON_PART = 2000  # its situation, its reason
MAX_RATIONALE = 20_000
MAX_SKILL_TEXT = 200_000
# A strategy remembers the tasks it was learned from: this many, each clipped.
MAX_SITUATIONS = 5
MAX_SITUATION_TEXT = 600
# The reviewer console's per-namespace guidance.
MAX_GUIDELINE_TEXT = 20_000
MAX_REASON_TEXT = 500
