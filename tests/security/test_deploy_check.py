"""Production settings: `manage.py check --deploy` is clean when DJANGO_SECURE is on."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _check_deploy(**env_overrides) -> subprocess.CompletedProcess:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "PYTEST_"))
    }
    env.update(DJANGO_SETTINGS_MODULE="config.settings", **env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_check_deploy():
    """With DJANGO_SECURE=true, a strong secret key and DEBUG off, the deploy checks
    (security, and every app's own checks such as the OpenAPI schema's) report nothing."""
    result = _check_deploy(
        DJANGO_SECURE="true",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="flywheel.example.com",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output, output
    assert "WARNING" not in output.upper(), output


def test_development_defaults_fail_check_deploy():
    """Without DJANGO_SECURE and with the built-in key the same check fails, naming the
    missing protections: the test above proves the settings, not a silenced check."""
    result = _check_deploy(DJANGO_DEBUG="false")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for check_id in (
        "security.W004",
        "security.W008",
        "security.W012",
        "security.W016",
    ):
        assert check_id in output, output


def test_secure_mode_refuses_the_built_in_secret_key():
    """DJANGO_SECURE=true with the development key refuses to start at all."""
    result = _check_deploy(DJANGO_SECURE="true", DJANGO_DEBUG="false")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr
