#!/usr/bin/env python3
"""The end of `make run`: the web server and a Django-Q2 worker as child processes.

Starts `manage.py runserver HOST:PORT --noreload` and `manage.py qcluster`, waits for
/healthz, prints the console address, the demo logins, the demo agent token and a curl
example, and stops both children cleanly on Ctrl-C or SIGTERM (or when either dies).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN_FILE = ROOT / "var" / "demo-agent-token.txt"
DEMO_LOGINS = (("reviewer", "reviewer-demo"), ("admin", "admin-demo"))


def start(args: list[str]) -> subprocess.Popen:
    # Own process group: a terminal's Ctrl-C reaches us once, and we stop each child.
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        start_new_session=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )


def stop(children: list[subprocess.Popen], timeout: float = 10.0) -> None:
    # SIGTERM to each child itself (not its group): qcluster's sentinel then stops its
    # own workers gracefully; the group is killed only if that takes too long.
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            child.wait()


def wait_healthy(
    url: str, children: list[subprocess.Popen], timeout: float, should_stop
) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not should_stop():
        if any(child.poll() is not None for child in children):
            return None
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                health = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:  # 503: up, but the database is not
            return json.loads(exc.read() or b"{}")
        except (OSError, ValueError):
            time.sleep(0.3)
            continue
        # The web server answers first; give the worker's first heartbeat a moment.
        worker_deadline = min(deadline, time.monotonic() + 15)
        while not health.get("worker_alive") and time.monotonic() < worker_deadline:
            if should_stop() or any(child.poll() is not None for child in children):
                break
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    health = json.loads(response.read() or b"{}")
            except (OSError, ValueError):
                pass
        return health
    return None


def banner(base: str, health: dict) -> str:
    token = (
        TOKEN_FILE.read_text().strip()
        if TOKEN_FILE.is_file()
        else "<run manage.py load_demo>"
    )
    logins = "\n".join(f"    {user} / {password}" for user, password in DEMO_LOGINS)
    return f"""
Flywheel is running (database: {health.get("database")}, worker: {health.get("worker")}).

  Console:   {base}/          (review queue; playbooks at {base}/playbooks/)
  Logins:
{logins}
  API docs:  {base}/api/v1/docs/
  Admin:     {base}/admin/     (admin / admin-demo)
  Agent token for namespace 'demo' ({TOKEN_FILE.relative_to(ROOT)}):
    {token}

  Try:  curl -s -H "Authorization: Bearer {token}" "{base}/api/v1/runs/?status=failure&page_size=5"

Ctrl-C stops the web server and the worker.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for /healthz"
    )
    args = parser.parse_args()

    stopping = False

    def on_signal(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    # --insecure: the development server serves the vendored static files (htmx, the
    # console's CSS, Swagger UI) with DEBUG off, so the console works offline.
    children = [
        start(["runserver", f"{args.host}:{args.port}", "--noreload", "--insecure"]),
        start(["qcluster"]),
    ]
    try:
        host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        base = f"http://{host}:{args.port}"
        health = wait_healthy(
            base + "/healthz", children, args.timeout, lambda: stopping
        )
        if health is None:
            if not stopping:
                print(
                    f"Flywheel did not become healthy at {base}/healthz",
                    file=sys.stderr,
                )
            return 1
        print(banner(base, health), flush=True)
        while not stopping:
            dead = [child for child in children if child.poll() is not None]
            if dead:
                print(
                    f"a child process exited (code {dead[0].returncode}); stopping",
                    file=sys.stderr,
                )
                return 1
            time.sleep(0.5)
        print("\nStopping the web server and the worker…", flush=True)
        return 0
    finally:
        stop(children)
        print("Stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
