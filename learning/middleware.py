"""Refuse oversized bodies with 413 before anything reads them; send the
Content-Security-Policy header."""

import io

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.http import JsonResponse


class BodySizeLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.FLYWHEEL_MAX_BODY_BYTES
        if _chunked(request):
            # No Content-Length to check: read at most one byte over the limit. Django
            # would read nothing of such a body (it trusts CONTENT_LENGTH), so one that
            # fits is handed on as if its length had been sent.
            body = request.META["wsgi.input"].read(limit + 1)
            if len(body) > limit:
                return _too_large(f"A chunked request body over {limit} bytes", limit)
            request.META["CONTENT_LENGTH"] = str(len(body))
            request._stream = LimitedStream(io.BytesIO(body), len(body))
            request._read_started = False
            return self.get_response(request)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse(
                {"detail": "Invalid Content-Length header."}, status=400
            )
        if length > limit:
            return _too_large(f"Request body of {length} bytes", limit)
        return self.get_response(request)


def _chunked(request) -> bool:
    encoding = request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
    return "chunked" in encoding and "wsgi.input" in request.META


def _too_large(what: str, limit: int) -> JsonResponse:
    return JsonResponse(
        {
            "detail": f"{what} is over the limit of {limit} bytes.",
            "code": "payload_too_large",
            "limit": limit,
        },
        status=413,
    )


class ContentSecurityPolicyMiddleware:
    """Send FLYWHEEL_CONTENT_SECURITY_POLICY with every response (unless a view set
    its own): scripts, styles, images and connections from this origin only, no
    inline or evaluated script, no plugins, no framing."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        policy = settings.FLYWHEEL_CONTENT_SECURITY_POLICY
        if policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = policy
        return response
