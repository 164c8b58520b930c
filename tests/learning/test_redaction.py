"""Secrets never reach the database: redaction of run content (learning/services/redaction.py)."""

import json

import pytest

from learning.models import Step, Trajectory
from learning.services.redaction import MASK, redact_text, redact_value

pytestmark = pytest.mark.django_db

OPENAI_KEY = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
ANTHROPIC_KEY = "sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe"
BEARER = "eyJhbGciOiJIUzI1NiJ9payloadsignature123"
AWS_ACCESS = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
PRIVATE_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6\n"
    "-----END RSA PRIVATE KEY-----"
)

SECRETS = [
    ("openai key", f"export OPENAI_API_KEY={OPENAI_KEY}", OPENAI_KEY),
    ("anthropic key", f"client = Anthropic(api_key='{ANTHROPIC_KEY}')", ANTHROPIC_KEY),
    (
        "bearer token",
        f"curl -H 'Authorization: Bearer {BEARER}' https://api.example.com",
        BEARER,
    ),
    (
        "url password",
        "connect to postgres://flyuser:hunter2pass@db.internal:5432/prod",
        "hunter2pass",
    ),
    (
        "private key",
        f"the deploy key is\n{PRIVATE_KEY}\nkeep it safe",
        "MIIEowIBAAKCAQEA",
    ),
    ("aws access key", f"aws_access_key_id = {AWS_ACCESS}", AWS_ACCESS),
    ("aws secret", f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET),
    ("assigned password", "login with password: Tr0ub4dor&3x", "Tr0ub4dor&3x"),
    (
        "stated password",
        "The database password is hunter2-prod-9931; use it with psql.",
        "hunter2-prod-9931",
    ),
]


@pytest.mark.parametrize("name, text, secret", SECRETS, ids=[s[0] for s in SECRETS])
def test_each_kind_of_secret_is_masked(name, text, secret):
    """Every kind of secret is replaced by the mask and counted."""
    redacted, count = redact_text(text)
    assert secret not in redacted
    assert MASK in redacted and count >= 1


def test_surrounding_text_is_kept():
    """Only the secret goes: the context a reflector needs stays readable."""
    redacted, count = redact_text(
        "connect to postgres://flyuser:hunter2pass@db.internal:5432/prod now"
    )
    assert redacted == f"connect to postgres://flyuser:{MASK}@db.internal:5432/prod now"
    assert count == 1


@pytest.mark.parametrize(
    "text",
    [
        "Change the flight of reservation 4WQ150 to HAT136 on 2024-05-20",
        "get_reservation_details(reservation_id=4WQ150)",
        "The task-ant-farm is a risk-free sk- prefix with nothing after it",
        "https://example.com/docs/api?page=2",
        "Basic economy fares are non-refundable",
        "The password is required and the token was rejected twice",
        "The secret is out: token is 3600s long",
    ],
)
def test_ordinary_text_is_untouched(text):
    """No false positives on everyday run content."""
    assert redact_text(text) == (text, 0)


def test_nested_values_and_secret_named_members_are_masked():
    """Strings anywhere in a JSON value are redacted; a member named like a secret is
    masked whole, whatever it holds; numbers and keys are kept."""
    value = {
        "headers": {"Authorization": f"Bearer {BEARER}"},
        "args": ["--token", OPENAI_KEY],
        "login": {"user": "mia", "password": "hunter2"},
        "db_password": "s3cr3t",
        "attempts": 3,
    }
    redacted, count = redact_value(value)
    text = json.dumps(redacted)
    for secret in (BEARER, OPENAI_KEY, "hunter2", "s3cr3t"):
        assert secret not in text
    assert redacted["login"]["user"] == "mia" and redacted["attempts"] == 3
    assert count == 4


def test_posted_runs_are_stored_redacted_in_descriptions_and_results(agent_client):
    """Secrets in step descriptions, step results, the task and error text are masked
    before storage; the run says it was redacted and how many were masked."""
    steps = [
        {
            "type": "tool_call",
            "tool": "shell",
            "description": f"export KEY={ANTHROPIC_KEY}",
            "result": {"stdout": f"aws_secret_access_key = {AWS_SECRET}"},
        },
        {
            "type": "observation",
            "description": f"found {AWS_ACCESS} in env",
            "result": {"dsn": "postgres://app:pg-pass-99@db/prod", "key": PRIVATE_KEY},
        },
        {"type": "message", "description": "all done, nothing secret here"},
    ]
    response = agent_client.post_json(
        "/api/v1/runs/",
        {
            "external_id": "leaky-1",
            "task_description": f"Use the token Bearer {BEARER} to call the API",
            "status": "failure",
            "error_message": f"401 with key {OPENAI_KEY}",
            "steps": steps,
        },
    )
    assert response.status_code == 201
    run = Trajectory.objects.get(external_id="leaky-1")
    stored = json.dumps(
        [
            run.task_description,
            run.error_message,
            *[(s.description, s.result) for s in Step.objects.filter(trajectory=run)],
        ]
    )
    for secret in (
        ANTHROPIC_KEY,
        AWS_SECRET,
        AWS_ACCESS,
        "pg-pass-99",
        "MIIEowIBAAKCAQEA",
        BEARER,
        OPENAI_KEY,
    ):
        assert secret not in stored
        assert secret not in response.content.decode()
    assert run.redacted is True and run.redaction_count == 7
    assert (
        Step.objects.get(trajectory=run, index=2).description
        == "all done, nothing secret here"
    )


def test_appended_steps_are_redacted_and_mark_the_run(agent_client):
    """Steps appended later are redacted too, and flip the run's redacted flag."""
    run = agent_client.post_json(
        "/api/v1/runs/", {"task_description": "clean start"}
    ).json()
    assert run["redacted"] is False
    agent_client.post_json(
        f"/api/v1/runs/{run['id']}/steps/",
        {
            "steps": [
                {"type": "action", "description": f"set OPENAI_API_KEY={OPENAI_KEY}"},
            ]
        },
    )
    stored = Trajectory.objects.get(pk=run["id"])
    assert stored.redacted is True and stored.redaction_count == 1
    assert OPENAI_KEY not in stored.steps.get().description
