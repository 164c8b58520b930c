"""scripts/run.py (the end of `make run`): web server + worker up, healthy, stopped cleanly."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.slow

ROOT = Path(settings.BASE_DIR)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_run_py_serves_with_a_live_worker_and_stops_both_on_sigterm(tmp_path):
    """run.py starts runserver and qcluster, waits until /healthz sees the worker,
    prints the console address, and on SIGTERM stops both and exits 0."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DJANGO_SETTINGS_MODULE", "Q_SYNC")
    }
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3",
        Q_STATS_DIR=str(tmp_path / "q-stats"),
        PYTHONUNBUFFERED="1",
    )
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "scripts/run.py", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while not any("Flywheel is running" in line for line in lines):
            assert proc.poll() is None, "".join(lines)[-2000:]
            assert time.monotonic() < deadline, "".join(lines)[-2000:]
            time.sleep(0.2)
        output = "".join(lines)
        assert (
            f"http://127.0.0.1:{port}/" in output
            and "reviewer / reviewer-demo" in output
        )
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/healthz", timeout=5
        ) as response:
            health = json.loads(response.read())
        assert health["database"] == "ok" and health["worker_alive"] is True
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        reader.join(timeout=5)
    output = "".join(lines)
    assert code == 0, output[-2000:]
    assert "has stopped" in output  # the Django-Q2 cluster shut down gracefully
    assert output.rstrip().endswith("Stopped.")
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
