"""Real processes against the test database: gunicorn, qcluster, redis-server, clients."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_database_url() -> str:
    """The URL of the database pytest-django created, for child processes."""
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return (
        f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
    )


def child_env(tmp_path: Path, **overrides) -> dict:
    """Production settings (not the sync test ones) on the test database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=child_database_url(),
        DATABASE_CONN_MAX_AGE="0",
        Q_SYNC="false",
        Q_STATS_DIR=str(tmp_path / "q-stats"),
        FLYWHEEL_INGEST_RATE="off",
        PYTHONUNBUFFERED="1",
    )
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def stop(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 20) -> None:
    """Stop a child started with start_new_session=True, with everything it forked."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def wait_for(
    predicate, *, timeout: float, interval: float = 0.1, what: str = "condition"
):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Gunicorn:
    def __init__(self, env: dict, workers: int, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi",
                "-w",
                str(workers),
                "--preload",
                "-b",
                f"127.0.0.1:{self.port}",
                "--timeout",
                "60",
                "--graceful-timeout",
                "2",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"gunicorn exited:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2):
                    return True
            except Exception:  # noqa: BLE001 - not up yet
                return False

        wait_for(up, timeout=60, interval=0.2, what="gunicorn")

    def stop(self):
        stop(self.proc)


@pytest.fixture
def gunicorn(transactional_db, tmp_path):
    """Starts gunicorn on loopback against the test database; stops it afterwards."""
    servers = []

    def _start(workers: int = 3, **env) -> Gunicorn:
        server = Gunicorn(
            child_env(tmp_path, **env),
            workers,
            tmp_path / f"gunicorn{len(servers)}.log",
        )
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.stop()


def qcluster(tmp_path: Path, name: str, **env) -> subprocess.Popen:
    log = tmp_path / f"qcluster-{name}.log"
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=child_env(tmp_path, **env),
        start_new_session=True,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
def qclusters(transactional_db, tmp_path):
    """Starts `manage.py qcluster` processes; kills what is left afterwards."""
    procs = []

    def _start(name: str, **env) -> subprocess.Popen:
        proc = qcluster(tmp_path, name, **env)
        procs.append(proc)
        return proc

    yield _start
    for proc in procs:
        stop(proc, signal.SIGKILL)  # a graceful stop waits for its workers: not needed


@pytest.fixture
def redis_url(tmp_path):
    """A throwaway redis-server on a free loopback port, nothing persisted."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(
            "redis-server is not installed (scripts/system_deps.sh installs it)"
        )
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)

    def up():
        try:
            return client.ping()
        except redis.ConnectionError:
            return False

    wait_for(up, timeout=20, what="redis-server")
    yield f"redis://127.0.0.1:{port}/0"
    stop(proc)


def post_json(
    url: str, token: str, body, timeout: float = 30
) -> tuple[int, dict | None]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, None


POSTER = Path(__file__).with_name("_poster.py")


def run_posters(
    url: str,
    token: str,
    bodies_per_client: list[list],
    tmp_path: Path,
    *,
    retries: int = 0,
    delay: float = 1.0,
    timeout: float = 120,
) -> list[list[dict]]:
    """One client process per list of bodies, all starting together; their records."""
    start_at = time.time() + delay
    procs = []
    for n, bodies in enumerate(bodies_per_client):
        bodies_path = tmp_path / f"bodies-{n}.json"
        bodies_path.write_text(json.dumps(bodies))
        out = tmp_path / f"out-{n}.json"
        procs.append(
            (
                subprocess.Popen(
                    [
                        sys.executable,
                        str(POSTER),
                        url,
                        token,
                        str(bodies_path),
                        str(start_at),
                        str(out),
                        str(retries),
                    ],
                ),
                out,
            )
        )
    results = []
    for proc, out in procs:
        assert proc.wait(timeout=timeout) == 0
        results.append(json.loads(out.read_text()))
    return results
