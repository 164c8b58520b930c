from tests.reliability.procs import gunicorn, qclusters, redis_url  # noqa: F401
