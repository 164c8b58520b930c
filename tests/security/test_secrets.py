"""Secrets posted inside runs never reach the database or the logs."""

import json
import logging

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db

SECRETS = {
    "anthropic": "sk-ant-api03-Zq8vN1xYb2Wc3Vd4Ue5Tf6Sg7Rh8Qi9Pj0Ok",
    "aws_key_id": "AKIAZ7QW3ERT5YU8IO2P",
    "github": "ghp_R4nd0mT0k3nV4lu3F0rT3st1ngOnlyXy7",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtaWFfbGkifQ.c2lnbmF0dXJlX2hlcmVfb2s",
    "db_password": "hunter2-Pa55w0rd-Qx",
    "slack": "xoxb-2048-4096-Sl4ckT0k3nV4lu3",
    "private_key_body": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7",
}


def _run_with_secrets() -> dict:
    s = SECRETS
    return {
        "external_id": "leaky-1",
        "task_description": f"Deploy with ANTHROPIC_API_KEY={s['anthropic']} please",
        "task_type": "ops.deploy",
        "status": "failure",
        "success_score": 0.0,
        "error_message": f"auth failed for postgres://app:{s['db_password']}@db:5432/app",
        "metrics": {"env": {"AWS_ACCESS_KEY_ID": s["aws_key_id"]}, "turns": 3},
        "steps": [
            {"type": "message", "description": f"user: my token is {s['github']}"},
            {
                "type": "tool_call",
                "tool": "http_get",
                "description": f"http_get(headers={{'Authorization': 'Bearer {s['jwt']}'}})",
                "result": {"nested": [{"deep": {"slack": f"token {s['slack']}"}}]},
            },
            {
                "type": "observation",
                "description": "-----BEGIN RSA PRIVATE KEY-----\n"
                f"{s['private_key_body']}\n-----END RSA PRIVATE KEY-----",
            },
        ],
    }


def _every_stored_text() -> str:
    """Every row of every table of the database, as text."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f'SELECT t::text FROM "{table}" t')
            chunks.extend(row[0] for row in cursor.fetchall())
    return "\n".join(chunks)


def test_secrets_in_runs_are_redacted_before_storage_and_logging(api_factory, caplog):
    """A failed run full of credentials (in its task, error, metrics, steps and nested
    step results), its feedback and the reflection that follows are stored and logged
    without any of the raw secrets; neither is the API token stored in the clear."""
    caplog.set_level(logging.DEBUG)
    client = api_factory("acme", "agent", "leaky-agent")
    response = client.post_json("/api/v1/runs/", _run_with_secrets())
    assert response.status_code == 201, response.json()
    run_id = response.json()["id"]
    feedback = client.post_json(
        f"/api/v1/runs/{run_id}/feedback/",
        {
            "feedback_type": "human",
            "score": 0.1,
            "message": f"it leaked {SECRETS['anthropic']} again",
        },
    )
    assert feedback.status_code == 201, feedback.json()
    raw_token = client._credentials["HTTP_AUTHORIZATION"].split()[1]

    stored = _every_stored_text()
    assert "leaky-1" in stored and "Deploy with" in stored  # the scan sees the run
    for name, secret in {**SECRETS, "api_token": raw_token}.items():
        assert secret not in stored, f"{name} reached the database"
        assert secret not in caplog.text, f"{name} reached the logs"
    # And the API echoes only the redacted text back.
    detail = client.get(f"/api/v1/runs/{run_id}/")
    for name, secret in SECRETS.items():
        assert secret not in json.dumps(detail.json()), f"{name} is served back"
