"""Streamable HTTP at /mcp, inside the Django app that gunicorn and runserver already
serve (WSGI): no second server to run.

Each POST is handed to the `mcp` SDK's own Streamable HTTP transport in its stateless,
JSON-response mode: a fresh session manager per request, driven on an event loop by
`async_to_sync`, with the request's body and headers as an ASGI scope and the answer
collected and returned as one Django response. Stateless means no server-side session
and no server-to-client stream, which is all these tools need (every call is a
request with one answer), and it is what lets a WSGI worker serve it: GET (the
optional notification stream) and DELETE (ending a session) answer 405, as the
protocol allows.

Authentication is the REST API's: the same bearer tokens, looked up by the same code
(`BearerTokenAuthentication`), 401 without a valid one. The tools check the role."""

from asgiref.sync import async_to_sync
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions

from learning.api.auth import BearerTokenAuthentication

_server = None


def _mcp_server():
    """Built once per process (it only holds the tool definitions), on the first /mcp
    request: importing the SDK takes seconds, which no other page should pay."""
    global _server
    if _server is None:
        from learning.mcp.server import mcp_server_build

        _server = mcp_server_build()
    return _server


def _scope(request) -> dict:
    host, _, port = request.get_host().partition(":")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.path.encode(),
        "root_path": "",
        "query_string": request.META.get("QUERY_STRING", "").encode("latin-1"),
        "headers": [
            (name.lower().encode("latin-1"), str(value).encode("latin-1"))
            for name, value in request.headers.items()
        ],
        "server": (host, int(port) if port.isdigit() else 80),
        "client": (request.META.get("REMOTE_ADDR", ""), 0),
    }


async def _serve(scope: dict, body: bytes, token) -> tuple[int, list, bytes]:
    """One request through the SDK's transport: (status, headers, body)."""
    import anyio
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    from learning.mcp import tools

    server = _mcp_server()
    tools.caller.set(token)
    manager = StreamableHTTPSessionManager(
        app=server._lowlevel_server,  # the SDK's server behind MCPServer
        json_response=True,
        stateless=True,
    )
    answered = anyio.Event()
    sent_body = False
    status, headers, chunks = 500, [], []

    async def receive():
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await answered.wait()  # the client "disconnects" once it has its answer
        return {"type": "http.disconnect"}

    async def send(message):
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status, headers = message["status"], message.get("headers", [])
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                answered.set()

    async with manager.run():
        await manager.handle_request(scope, receive, send)
    return status, headers, b"".join(chunks)


def _unauthorized(detail: str) -> JsonResponse:
    response = JsonResponse({"detail": detail}, status=401)
    response["WWW-Authenticate"] = "Bearer"
    return response


@csrf_exempt  # bearer tokens, no cookies: nothing for a cross-site form to ride on
def mcp_endpoint(request):
    if request.method != "POST":
        response = JsonResponse(
            {
                "detail": "This MCP endpoint is stateless: POST JSON-RPC messages "
                "(no GET stream, no sessions to DELETE)."
            },
            status=405,
        )
        response["Allow"] = "POST"
        return response
    try:
        auth = BearerTokenAuthentication().authenticate(request)
    except exceptions.AuthenticationFailed as exc:
        return _unauthorized(str(exc.detail))
    if auth is None:
        return _unauthorized("Authentication credentials were not provided.")
    status, headers, body = async_to_sync(_serve)(
        _scope(request), request.body, auth[1]
    )
    response = HttpResponse(body, status=status)
    for name, value in headers:
        name = name.decode("latin-1")
        if name.lower() not in ("content-length", "transfer-encoding", "connection"):
            response[name] = value.decode("latin-1")
    return response
