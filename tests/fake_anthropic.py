"""A local fake of the Anthropic Messages API (and Message Batches) on a thread, for
tests of the Claude reflector through the real SDK (`base_url=` points here).

Behaviour is scripted per request with `server.script(...)`: each item is
``("tool", {...})`` (a record_reflection tool call with that input), ``("status", 429)``,
``("sleep", seconds)`` (answer late: a timeout for the client), ``("text", "...")`` (no
tool call) or ``("raw", dict)`` (any body). With no script left it answers with
`default` (a callable of the request body). Every request is kept in `requests`.

Usage is reported as the real API does, with prompt caching: the prefix up to the last
block marked `cache_control` (tools, then system blocks, then message blocks, in that
order) is cached when it reaches the model's minimum (1,024 tokens; 2,048 for Haiku).
The first request with a prefix reports it as `cache_creation_input_tokens`, later
ones with the same prefix as `cache_read_input_tokens`; a shorter prefix is not cached
at all and counts as plain `input_tokens`. Tokens are estimated conservatively as
characters / 4 (real tokenizers give more tokens per character, so a prefix this fake
caches is long enough for the real API too)."""

import hashlib
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOOL = "record_reflection"
CHARS_PER_TOKEN = 4


def min_cacheable_tokens(model: str) -> int:
    return 2048 if "haiku" in (model or "") else 1024


def estimate_tokens(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN


def _blocks(body) -> list[dict]:
    """The request's cacheable blocks in the order the API caches them."""
    out = [dict(tool) for tool in body.get("tools") or []]
    system = body.get("system") or []
    if isinstance(system, str):
        system = [{"type": "text", "text": system}]
    out += [dict(block) for block in system]
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        out += [dict(block, role=message.get("role")) for block in content or []]
    return out


def _chars(block: dict) -> int:
    if block.get("type") == "text" and "name" not in block:
        return len(block.get("text") or "")
    return len(json.dumps({k: v for k, v in block.items() if k != "cache_control"}))


class PromptCache:
    """Which prefixes were written, and the usage a request reports."""

    def __init__(self):
        self.written: set[str] = set()
        self._lock = threading.Lock()

    def usage(self, body: dict, *, output_tokens: int = 300) -> dict:
        blocks = _blocks(body)
        marked = [i for i, b in enumerate(blocks) if b.get("cache_control")]
        end = marked[-1] + 1 if marked else 0
        prefix_tokens = sum(_chars(b) for b in blocks[:end]) // CHARS_PER_TOKEN
        rest_tokens = sum(_chars(b) for b in blocks[end:]) // CHARS_PER_TOKEN
        created = read = 0
        if end and prefix_tokens >= min_cacheable_tokens(body.get("model", "")):
            digest = hashlib.sha256(
                json.dumps([body.get("model"), blocks[:end]], sort_keys=True).encode()
            ).hexdigest()
            with self._lock:
                if digest in self.written:
                    read = prefix_tokens
                else:
                    self.written.add(digest)
                    created = prefix_tokens
        else:
            rest_tokens += prefix_tokens
        return {
            "input_tokens": rest_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": created,
            "cache_read_input_tokens": read,
        }


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
            "cache_read_input_tokens": 0,
        },
    }


def tool_message(tool_input, **kw):
    return message_body(
        [{"type": "tool_use", "id": "toolu_1", "name": TOOL, "input": tool_input}], **kw
    )


def default_lessons(body):
    """A diagnosis and one lesson naming the first tool the run called (so tests can
    check it came from the model)."""
    text = json.dumps(body.get("messages", []))
    tool = (
        "get_reservation_details" if "get_reservation_details" in text else "the_tool"
    )
    return {
        "diagnosis": {
            "what_happened": "The agent changed the booking without reading it.",
            "root_cause": "It did not know the booking's cabin.",
            "correct_approach": f"Call {tool} first.",
            "key_insight": "Read the state before changing it.",
        },
        "lessons": [
            {
                "kind": "strategy_helpful",
                "polarity": "do",
                "when": "the user asks to change a booking",
                "directive": f"call `{tool}` first to read the booking (model)",
                "why": "fake model",
                "confidence": 0.8,
                "step_indexes": [0],
            }
        ],
        "strategy_tags": [],
    }


class FakeAnthropic:
    def __init__(self):
        self.requests: list[dict] = []
        self.cache = PromptCache()
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
        usage = self.cache.usage(body)
        model = body.get("model", "claude-sonnet-4-6")
        if kind == "sleep":
            time.sleep(value)
            return 200, tool_message(default_lessons(body), usage=usage)
        if kind == "text":
            return 200, message_body([{"type": "text", "text": value}], usage=usage)
        if kind == "raw":
            return 200, value
        return 200, tool_message(value, model=model, usage=usage)

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

    def _handler(self):  # noqa: C901 - one dispatcher for the API's few routes
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
