"""A local fake of the Anthropic Messages API (and Message Batches) on a thread, for
tests of the Claude reflector through the real SDK (`base_url=` points here).

Behaviour is scripted per request with `server.script(...)`: each item is
``("tool", {...})`` (a record_lessons tool call with that input), ``("status", 429)``,
``("sleep", seconds)`` (answer late: a timeout for the client), ``("text", "...")`` (no
tool call) or ``("raw", dict)`` (any body). With no script left it answers with
`default` (a callable of the request body). Every request is kept in `requests`."""

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOOL = "record_lessons"


def message_body(content, *, model="claude-sonnet-4-6", usage=None):
    return {
        "id": f"msg_{time.monotonic_ns()}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": usage
        or {
            "input_tokens": 1200,
            "output_tokens": 300,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 900,
        },
    }


def tool_message(tool_input, **kw):
    return message_body(
        [{"type": "tool_use", "id": "toolu_1", "name": TOOL, "input": tool_input}], **kw
    )


def default_lessons(body):
    """A lesson naming the first tool the run called (so tests can check it came
    from the model)."""
    text = json.dumps(body.get("messages", []))
    tool = (
        "get_reservation_details" if "get_reservation_details" in text else "the_tool"
    )
    return {
        "summary": "fake",
        "lessons": [
            {
                "kind": "strategy_helpful",
                "content": f"Call {tool} first to read the reservation before changing it (model).",
                "rationale": "fake model",
                "confidence": 0.8,
                "step_indexes": [0],
            }
        ],
    }


class FakeAnthropic:
    def __init__(self):
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self._script: list = []
        self.default = lambda body: ("tool", default_lessons(body))
        self.batches: dict[str, dict] = {}
        self.batch_status = "ended"
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self):
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def script(self, *items):
        with self._lock:
            self._script.extend(items)

    def _next(self, body):
        with self._lock:
            item = self._script.pop(0) if self._script else None
        return item or self.default(body)

    def _reply(self, body):
        """(status, json) for one Messages request."""
        kind, value = self._next(body)
        if kind == "status":
            return value, {
                "type": "error",
                "error": {"type": "api_error", "message": f"fake {value}"},
            }
        if kind == "sleep":
            time.sleep(value)
            return 200, tool_message(default_lessons(body))
        if kind == "text":
            return 200, message_body([{"type": "text", "text": value}])
        if kind == "raw":
            return 200, value
        return 200, tool_message(value, model=body.get("model", "claude-sonnet-4-6"))

    def _batch_view(self, batch):
        view = {k: v for k, v in batch.items() if k != "results"}
        view["processing_status"] = (
            self.batch_status
            if batch["processing_status"] != "canceling"
            else "canceling"
        )
        view["results_url"] = (
            f"{self.base_url}/v1/messages/batches/{batch['id']}/results"
            if view["processing_status"] == "ended"
            else None
        )
        return view

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, payload, content_type="application/json"):
                data = (
                    payload
                    if isinstance(payload, bytes)
                    else json.dumps(payload).encode()
                )
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append({"path": self.path, "body": body})
                fake.headers.append(dict(self.headers))
                path = self.path.split("?")[0]
                if path == "/v1/messages":
                    status, payload = fake._reply(body)
                    return self._send(status, payload)
                if path == "/v1/messages/batches":
                    batch_id = f"msgbatch_{next(fake._ids)}"
                    results = []
                    for req in body.get("requests", []):
                        status, payload = fake._reply(req["params"])
                        result = (
                            {"type": "succeeded", "message": payload}
                            if status == 200
                            else {
                                "type": "errored",
                                "error": {
                                    "type": "error",
                                    "error": {"type": "api_error", "message": "fake"},
                                },
                            }
                        )
                        results.append(
                            {"custom_id": req["custom_id"], "result": result}
                        )
                    batch = {
                        "id": batch_id,
                        "type": "message_batch",
                        "processing_status": "ended",
                        "request_counts": {
                            "processing": 0,
                            "succeeded": len(results),
                            "errored": 0,
                            "canceled": 0,
                            "expired": 0,
                        },
                        "created_at": "2026-01-01T00:00:00Z",
                        "ended_at": "2026-01-01T00:01:00Z",
                        "expires_at": "2026-01-02T00:00:00Z",
                        "archived_at": None,
                        "cancel_initiated_at": None,
                        "results": results,
                    }
                    fake.batches[batch_id] = batch
                    return self._send(200, fake._batch_view(batch))
                if path.endswith("/cancel"):
                    batch = fake.batches.get(path.split("/")[-2])
                    if batch is None:
                        return self._send(
                            404,
                            {
                                "type": "error",
                                "error": {"type": "not_found_error", "message": "no"},
                            },
                        )
                    batch["canceled"] = True
                    return self._send(200, fake._batch_view(batch))
                return self._send(
                    404,
                    {
                        "type": "error",
                        "error": {"type": "not_found_error", "message": path},
                    },
                )

            def do_GET(self):
                fake.requests.append({"path": self.path, "body": None})
                parts = self.path.split("?")[0].strip("/").split("/")
                # v1 messages batches <id> [results]
                if len(parts) >= 4 and parts[:3] == ["v1", "messages", "batches"]:
                    batch = fake.batches.get(parts[3])
                    if batch is None:
                        return self._send(
                            404,
                            {
                                "type": "error",
                                "error": {"type": "not_found_error", "message": "no"},
                            },
                        )
                    if len(parts) == 5 and parts[4] == "results":
                        lines = (
                            "\n".join(json.dumps(r) for r in batch["results"]) + "\n"
                        )
                        return self._send(200, lines.encode(), "application/binary")
                    return self._send(200, fake._batch_view(batch))
                return self._send(
                    404,
                    {
                        "type": "error",
                        "error": {"type": "not_found_error", "message": self.path},
                    },
                )

        return Handler
