"""Test settings: PostgreSQL from DATABASE_URL, Django-Q2 in sync mode."""

import os

os.environ.setdefault("Q_SYNC", "true")

from config.settings import *  # noqa: E402,F403

Q_CLUSTER["sync"] = True  # noqa: F405  (read once by django_q at import)
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ANTHROPIC_API_KEY = ""
