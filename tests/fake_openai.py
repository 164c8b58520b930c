"""A local fake of an OpenAI-compatible Chat Completions server on a thread, for tests
of the OpenAI-compatible reflector (and of instrumented agents) through the real
`openai` SDK: `base_url=fake.base_url` (it ends in /v1).

Behaviour is scripted per request with `server.script(...)`: each item is
``("tool", {...})`` (a function call with those arguments), ``("tool_raw", "...")``
(a function call whose arguments are that text, e.g. broken JSON), ``("content",
"...")`` (a plain answer, no function call), ``("status", 500)``, ``("sleep",
seconds)`` (answer late: a timeout for the client) or ``("raw", dict)`` (any body).
With no script left it answers with `default(body)`: a function call when the request
offers tools, else the same data as JSON content. `reject_tools = True` makes it
answer 400 to any request with `tools`, as servers without function calling do.
`required_key` makes it answer 401 to any other bearer key. Every request is kept in
`requests` (path, body, headers with lower-case names)."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def completion(message: dict, *, model: str, body: dict, finish: str = "stop") -> dict:
    prompt_chars = sum(len(str(m.get("content") or "")) for m in body["messages"])
    return {
        "id": f"chatcmpl-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt_chars // 4,
            "completion_tokens": 200,
            "total_tokens": prompt_chars // 4 + 200,
        },
    }


def tool_call_message(name: str, arguments: str) -> dict:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
        ],
    }


def default_answer(body: dict) -> dict:
    """A diagnosis and one lesson naming the first tool the run called."""
    text = json.dumps(body.get("messages", []))
    tool = "get_order" if "get_order" in text else "the_tool"
    return {
        "diagnosis": {
            "what_happened": "The agent refunded before reading the order.",
            "root_cause": "It did not know the order's payment method.",
            "correct_approach": f"Call {tool} first.",
            "key_insight": "Read the state before changing it.",
        },
        "lessons": [
            {
                "kind": "strategy_helpful",
                "polarity": "do",
                "when": "the user asks for a refund",
                "directive": f"call `{tool}` to read the order's payment method first",
                "why": "fake compatible server",
                "confidence": 0.75,
                "step_indexes": [0],
            }
        ],
        "strategy_tags": [],
    }


class FakeOpenAI:
    def __init__(self):
        self.requests: list[dict] = []
        self._script: list = []
        self._lock = threading.Lock()
        self.reject_tools = False
        self.required_key: str | None = None
        self.default = default_answer
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def script(self, *items):
        with self._lock:
            self._script.extend(items)

    def _next(self):
        with self._lock:
            return self._script.pop(0) if self._script else None

    def reply(self, body: dict, headers: dict) -> tuple[int, dict]:
        """(status, json) for one chat completion request."""
        if self.required_key and headers.get("authorization") != (
            f"Bearer {self.required_key}"
        ):
            return 401, _error("invalid api key", "invalid_api_key")
        if self.reject_tools and body.get("tools"):
            return 400, _error("tools are not supported by this server", "bad_request")
        model = body.get("model", "fake-model")
        item = self._next()
        kind, value = item if item else ("default", None)
        if kind == "status":
            return value, _error(f"fake {value}", "server_error")
        if kind == "sleep":
            time.sleep(value)
            kind = "default"
        if kind == "raw":
            return 200, value
        if kind == "content":
            message = {"role": "assistant", "content": value}
            return 200, completion(message, model=model, body=body)
        data = value if kind == "tool" else self.default(body)
        arguments = value if kind == "tool_raw" else json.dumps(data)
        tools = body.get("tools") or []
        if tools:
            name = tools[0]["function"]["name"]
            message = tool_call_message(name, arguments)
            return 200, completion(message, model=model, body=body, finish="tool_calls")
        message = {"role": "assistant", "content": arguments}
        return 200, completion(message, model=model, body=body)

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                headers = {k.lower(): v for k, v in self.headers.items()}
                fake.requests.append(
                    {"path": self.path, "body": body, "headers": headers}
                )
                if self.path.split("?")[0] != "/v1/chat/completions":
                    return self._send(404, _error(self.path, "not_found"))
                status, payload = fake.reply(body, headers)
                return self._send(status, payload)

        return Handler


def _error(message: str, code: str) -> dict:
    return {"error": {"message": message, "type": code, "code": code, "param": None}}
