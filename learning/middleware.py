"""Refuse oversized bodies with 413 before anything reads them; send the
Content-Security-Policy header."""

from django.conf import settings
from django.http import JsonResponse


class BodySizeLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.FLYWHEEL_MAX_BODY_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse(
                {"detail": "Invalid Content-Length header."}, status=400
            )
        if length > limit:
            return JsonResponse(
                {
                    "detail": f"Request body of {length} bytes is over the limit of {limit} bytes.",
                    "code": "payload_too_large",
                    "limit": limit,
                },
                status=413,
            )
        return self.get_response(request)


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
