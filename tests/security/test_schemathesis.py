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


@pytest.mark.slow
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


def test_found_by_fuzzing_time_zone_offsets_beyond_postgres_range_are_a_400(
    api_factory,
):
    """Regression (found by the test above): Python accepts a +20:48 offset, PostgreSQL
    does not. A run whose step carries one, or a list filter with one, is a 400 and
    nothing is stored, not a 500."""
    from learning.models import Trajectory

    client = api_factory("acme", "agent", "tz-agent")
    response = client.post_json(
        "/api/v1/runs/",
        {
            "external_id": "tz-1",
            "task_description": "Rebook",
            "status": "success",
            "steps": [
                {
                    "type": "action",
                    "description": "rebook",
                    "ended_at": "2024-05-13T06:49:19+20:48",
                }
            ],
        },
    )
    assert response.status_code == 400, response.content
    assert not Trajectory.objects.filter(external_id="tz-1").exists()
    listing = client.get("/api/v1/runs/?created_before=2024-04-27T01:02:39%2B17:32")
    assert listing.status_code == 400, listing.content
