"""Property-based API testing against the served OpenAPI schema (Schemathesis).

Schemathesis reads /api/v1/schema/ from a live server and, for every operation,
generates schema-valid and schema-invalid requests (a bounded number of each) sent
with an admin token: no response may be a 5xx, and every response must match the
schema documented for its status code. All operations run in one test so that every
problem is listed, operation by operation, in a single failure message.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from learning.services.tokens import token_create

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = {GenerationMode.POSITIVE: 8, GenerationMode.NEGATIVE: 4}


def _fuzz(operation, mode, headers) -> str | None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES[mode],
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
    )
    def run(case):
        case.call_and_validate(
            headers=headers, checks=[not_a_server_error, response_schema_conformance]
        )

    try:
        run()
    except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - reported below
        return f"{operation.label} [{mode}]: {_summary(exc)}"
    return None


def _summary(exc: Exception) -> str:
    """The failure titles, the first lines of each and the curl line to reproduce."""
    keep = []
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if line.startswith(("- ST", "- ", "curl ")) or (
            i and lines[i - 1].startswith("- ")
        ):
            keep.append(line[:300])
    return " | ".join(keep) or str(exc)[:500]


def test_every_operation_survives_generated_requests(live_server):
    """No generated request gets a 5xx or a response that contradicts the schema."""
    _token, raw = token_create(name="fuzzer", namespace_slug="fuzz", role="admin")
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/v1/schema/")
    schema.config.update(base_url=live_server.url)
    headers = {"Authorization": f"Bearer {raw}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20
    failures = [
        problem
        for operation in operations
        for mode in EXAMPLES
        if (problem := _fuzz(operation, mode, headers))
    ]
    assert failures == [], "\n\n".join(failures)
