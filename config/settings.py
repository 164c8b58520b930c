"""Flywheel settings: one module, configured from the environment."""

import hashlib
import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {
        "1",
        "true",
        "yes",
        "on",
    }


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def env_list(name: str, default: str = "") -> list[str]:
    return [
        item.strip()
        for item in os.environ.get(name, default).split(",")
        if item.strip()
    ]


DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "insecure-dev-key-change-me-in-production-0123456789abcdef"
)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "django_q",
    "template_partials",
    "learning",
    "review",
    "playbooks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "learning.middleware.ContentSecurityPolicyMiddleware",
    "learning.middleware.BodySizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The ORM broker, the worker and the web server share the file. WAL lets readers
    # (the worker loading runs, the console) go on while an agent's post writes;
    # IMMEDIATE transactions take the write lock up front, so two writers queue
    # (busy_timeout) instead of failing to upgrade a read lock; synchronous=NORMAL is
    # safe with WAL and keeps commits cheap.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": (
                "PRAGMA journal_mode=WAL;"
                "PRAGMA synchronous=NORMAL;"
                "PRAGMA busy_timeout=30000;"
                "PRAGMA cache_size=-20000"
            ),
        }
    )
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DATABASE_IS_POSTGRES = DATABASES["default"]["ENGINE"].endswith("postgresql")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "var" / "static"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "review:queue"
LOGOUT_REDIRECT_URL = "login"

# Bodies above this many bytes are refused with 413 before they are parsed. 16 MiB
# holds a full batch (learning.limits.MAX_RUNS_PER_BATCH, 1,000 runs) of runs the size
# of the tau-bench demo's (11.5 KB on average, 38 KB at most): a batch is bounded by
# both, runs and bytes.
FLYWHEEL_MAX_BODY_BYTES = int(
    os.environ.get("FLYWHEEL_MAX_BODY_BYTES", 16 * 1024 * 1024)
)
DATA_UPLOAD_MAX_MEMORY_SIZE = FLYWHEEL_MAX_BODY_BYTES

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["learning.api.auth.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["learning.api.auth.HasNamespaceToken"],
    "DEFAULT_PAGINATION_CLASS": "learning.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "learning.api.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["learning.api.parsers.StrictJSONParser"],
    # Every write of a token counts against FLYWHEEL_INGEST_RATE (learning/throttling.py).
    "DEFAULT_THROTTLE_CLASSES": ["learning.throttling.IngestRateThrottle"],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Flywheel API",
    "DESCRIPTION": "Runs, feedback, learning candidates, playbooks and recall.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its docs page are public (they hold no data) and work offline:
    # Swagger UI's assets are vendored by drf-spectacular-sidecar, no CDN.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The token typed into the docs page stays in that tab's memory, never in
    # localStorage (where any script of this origin, or the next user, could read it).
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": False},
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- The learning loop -------------------------------------------------------------
# Effective score strategy: latest | average | weighted (see learning/services/scoring.py).
FLYWHEEL_SCORE_STRATEGY = os.environ.get("FLYWHEEL_SCORE_STRATEGY", "weighted")
# Feedback departing from the run's score by more than this marks it for relearning.
FLYWHEEL_RELEARN_THRESHOLD = env_float("FLYWHEEL_RELEARN_THRESHOLD", 0.3)
# Fraction of successful runs reflected on (deterministic by run id).
FLYWHEEL_SUCCESS_SAMPLE_RATE = env_float("FLYWHEEL_SUCCESS_SAMPLE_RATE", 0.25)
# Candidates below their kind's floor are kept but hidden from the default queue.
FLYWHEEL_CONFIDENCE_FLOORS = {
    "strategy_helpful": env_float("FLYWHEEL_FLOOR_STRATEGY_HELPFUL", 0.3),
    "strategy_harmful": env_float("FLYWHEEL_FLOOR_STRATEGY_HARMFUL", 0.3),
    "preference": env_float("FLYWHEEL_FLOOR_PREFERENCE", 0.4),
    "durable_fact": env_float("FLYWHEEL_FLOOR_DURABLE_FACT", 0.4),
    "procedure": env_float("FLYWHEEL_FLOOR_PROCEDURE", 0.4),
    "patch_skill": env_float("FLYWHEEL_FLOOR_PATCH_SKILL", 0.5),
}
FLYWHEEL_LEASE_SECONDS = int(os.environ.get("FLYWHEEL_LEASE_SECONDS", 300))
ANTHROPIC_API_KEY = os.environ.get("ANTHROPIC_API_KEY", "")
ANTHROPIC_BASE_URL = os.environ.get("ANTHROPIC_BASE_URL", "") or None
ANTHROPIC_MODEL = os.environ.get("ANTHROPIC_MODEL", "claude-sonnet-4-6")
ANTHROPIC_TIMEOUT = env_float("ANTHROPIC_TIMEOUT", 60.0)
ANTHROPIC_MAX_RETRIES = int(os.environ.get("ANTHROPIC_MAX_RETRIES", 2))
# Batch reflection waits this long for a Message Batch, then falls back to offline.
ANTHROPIC_BATCH_WAIT = env_float("ANTHROPIC_BATCH_WAIT", 90.0)
# Which reflector: offline | claude | openai. Empty: claude when ANTHROPIC_API_KEY is
# set, else offline.
FLYWHEEL_REFLECTOR = os.environ.get("FLYWHEEL_REFLECTOR", "").strip().lower()
if FLYWHEEL_REFLECTOR not in ("", "offline", "claude", "openai"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "FLYWHEEL_REFLECTOR must be offline, claude or openai, "
        f"not {FLYWHEEL_REFLECTOR!r}."
    )
# Any OpenAI-compatible Chat Completions server (FLYWHEEL_REFLECTOR=openai): the base
# URL up to /v1, the key (may be empty for a local server) and the model name.
OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL", "") or None
OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "")
OPENAI_MODEL = os.environ.get("OPENAI_MODEL", "")
OPENAI_TIMEOUT = env_float("OPENAI_TIMEOUT", 120.0)
OPENAI_MAX_RETRIES = int(os.environ.get("OPENAI_MAX_RETRIES", 2))
# Batch reflection reflects run by run for at most this long.
OPENAI_BATCH_WAIT = env_float("OPENAI_BATCH_WAIT", 90.0)
# USD per million tokens, for the cost stored on reflections (0: not counted).
OPENAI_PRICE_INPUT = env_float("OPENAI_PRICE_INPUT", 0.0)
OPENAI_PRICE_OUTPUT = env_float("OPENAI_PRICE_OUTPUT", 0.0)
# A run's reflection is tried this many times before it is marked `failed`.
FLYWHEEL_REFLECTION_MAX_ATTEMPTS = int(
    os.environ.get("FLYWHEEL_REFLECTION_MAX_ATTEMPTS", 3)
)
# The sweeper re-queues runs pending longer than this (more than Q_RETRY, so the
# broker's own re-delivery after a killed worker comes first).
FLYWHEEL_REFLECTION_STALE_SECONDS = int(
    os.environ.get("FLYWHEEL_REFLECTION_STALE_SECONDS", 300)
)
# Batch reflection of a task type once this many new finished runs arrived.
FLYWHEEL_BATCH_MIN_RUNS = int(os.environ.get("FLYWHEEL_BATCH_MIN_RUNS", 5))

# --- Background work (Django-Q2) ----------------------------------------------------
# ORM broker by default: one machine needs nothing but the database. Set Q_BROKER_URL
# to redis://host:6379/0 to run more workers on more machines.
Q_BROKER_URL = os.environ.get("Q_BROKER_URL", "")
Q_CLUSTER = {
    "name": "flywheel",
    "workers": int(os.environ.get("Q_WORKERS", 2)),
    # A task is killed after `timeout` seconds; an unacknowledged one is handed out
    # again only after `retry` seconds, so one task never runs twice at once.
    "timeout": int(os.environ.get("Q_TIMEOUT", 120)),
    "retry": int(os.environ.get("Q_RETRY", 180)),
    "max_attempts": int(os.environ.get("Q_MAX_ATTEMPTS", 5)),
    "ack_failures": True,
    "catch_up": False,
    # Results are not pruned per task (that locked and unpickled up to `save_limit`
    # saved results for every task: ~17 CPU-ms each); internal tasks do not save their
    # successes at all (learning/queue.py) and the schedule
    # `flywheel-task-results-prune` keeps the newest FLYWHEEL_TASK_RESULTS_KEEP.
    "save_limit": 0,
    # The ORM broker's wait between two looks at an empty queue. A posted failure
    # goes through two tasks (reflection, then the audit), so this bounds its
    # time-to-candidate; an idle worker costs one indexed query per poll
    # (bench/bench_latency.py measures both).
    "poll": env_float("Q_POLL", 0.05),
    "sync": env_bool("Q_SYNC", False),
    "label": "Django Q2",
}
# Cluster heartbeats go to this cache; /healthz reads them from the web process, so it
# must be shared between processes: a directory on this machine by default.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "q-stats": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        # One directory per database, so two setups on one machine never see each
        # other's workers.
        "LOCATION": os.environ.get(
            "Q_STATS_DIR",
            str(
                BASE_DIR
                / "var"
                / "q-stats"
                / hashlib.sha256(
                    "|".join(
                        str(DATABASES["default"].get(k) or "")
                        for k in ("HOST", "PORT", "NAME")
                    ).encode()
                ).hexdigest()[:16]
            ),
        ),
    },
}
Q_CLUSTER["cache"] = "q-stats"
# Successful results of scheduled and ad-hoc tasks kept by the hourly prune.
FLYWHEEL_TASK_RESULTS_KEEP = int(os.environ.get("FLYWHEEL_TASK_RESULTS_KEEP", 1000))
if Q_BROKER_URL.startswith("redis"):
    Q_CLUSTER["redis"] = Q_BROKER_URL
else:
    Q_CLUSTER["orm"] = "default"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # The MCP SDK's transport logs three lines per stateless /mcp request.
        "mcp.server.streamable_http_manager": {"level": "WARNING"},
        "mcp.server.streamable_http": {"level": "WARNING"},
    },
}

if not DEBUG and env_bool("DJANGO_SECURE", False):
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = 31536000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Reliability and security ---------------------------------------------------------
# Per-token write limit, one count for every write through the API (runs, steps,
# completions, feedback, proposals, OTel, review and playbook actions): "6000/min",
# "20/s", "off". Counted in the cache below: local memory is per process (N web
# processes let a token write up to N× the rate); FLYWHEEL_CACHE_URL=redis://… shares it.
# The default, 6000/min (100/s per process), is above what one web process can answer
# for single-run posts: 8 tau-bench-sized runs/s per process (bench_ingest,
# `ingest_posts_per_s_b1` over 2 processes) and 94 small runs/s per process (3,200
# single-run posts in 17 s over 2 processes, where 1200/min refused 840): a fleet
# sharing one token and posting one run each is never refused while the server keeps
# up; the limit stops a token flooding well past that.
FLYWHEEL_INGEST_RATE = os.environ.get("FLYWHEEL_INGEST_RATE", "6000/min")
FLYWHEEL_THROTTLE_CACHE = "default"
# Console and admin logins: refused (without a password check) after this many
# failures per user name, or per client address, within the window (seconds).
FLYWHEEL_LOGIN_USER_FAILURES = int(os.environ.get("FLYWHEEL_LOGIN_USER_FAILURES", 5))
FLYWHEEL_LOGIN_ADDRESS_FAILURES = int(
    os.environ.get("FLYWHEEL_LOGIN_ADDRESS_FAILURES", 20)
)
FLYWHEEL_LOGIN_WINDOW = int(os.environ.get("FLYWHEEL_LOGIN_WINDOW", 900))
# Behind a reverse proxy, the header whose last entry is the client's address
# (e.g. X-Forwarded-For); empty: REMOTE_ADDR. Set it only if the proxy sets it.
FLYWHEEL_CLIENT_ADDRESS_HEADER = os.environ.get("FLYWHEEL_CLIENT_ADDRESS_HEADER", "")
# Sent with every response. Inline style *attributes* are allowed (the console's chart
# swatches); inline <style>/<script>, eval, plugins and framing are not.
FLYWHEEL_CONTENT_SECURITY_POLICY = os.environ.get(
    "FLYWHEEL_CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "style-src-attr 'unsafe-inline'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'",
)
# Webhooks reach public addresses only; true admits loopback and private receivers
# (on premises). Link-local (cloud metadata), multicast and unspecified never.
FLYWHEEL_WEBHOOK_ALLOW_PRIVATE = env_bool("FLYWHEEL_WEBHOOK_ALLOW_PRIVATE", False)
FLYWHEEL_CACHE_URL = os.environ.get("FLYWHEEL_CACHE_URL", "")
if FLYWHEEL_CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES["default"] = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": FLYWHEEL_CACHE_URL,
    }
# Several serializers have a `status` field with different choice sets: name the shared
# ones so the schema has stable enum names (and `check --deploy` stays warning-free).
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"] = {
    "RunStatusEnum": "learning.models.RunStatus",
    "CandidateStatusEnum": "learning.models.CandidateStatus",
    "StepTypeEnum": "learning.models.StepType",
    "StrategyTypeEnum": "playbooks.models.StrategyType",
}
if env_bool("DJANGO_SECURE", False) and "insecure-dev-key" in SECRET_KEY:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "DJANGO_SECURE is on: set DJANGO_SECRET_KEY to a secret value."
    )
