"""Bearer-token authentication: every token belongs to one namespace and has a role."""

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from learning.models import ApiToken, Role


class TokenUser:
    """What request.user is for an API token: enough for DRF, nothing more."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False

    def __init__(self, token: ApiToken):
        self.token = token
        self.username = f"token:{token.name}"

    def __str__(self):
        return self.username


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() != self.keyword.lower():
            raise exceptions.AuthenticationFailed(
                "Authorization header must be 'Bearer <token>'."
            )
        token = (
            ApiToken.objects.select_related("namespace")
            .filter(key_hash=ApiToken.hash_key(parts[1]), revoked_at__isnull=True)
            .first()
        )
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        now = timezone.now()
        if (
            token.last_used_at is None
            or (now - token.last_used_at).total_seconds() > 60
        ):
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return TokenUser(token), token

    def authenticate_header(self, request):
        return self.keyword


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = BearerTokenAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer"}


class HasNamespaceToken(permissions.BasePermission):
    """Any valid token (the agent role is the floor)."""

    required_role = Role.AGENT

    def has_permission(self, request, view):
        token = request.auth
        if not isinstance(token, ApiToken):
            return False
        return token.has_role(getattr(view, "required_role", self.required_role))


def role_required(role: str):
    """A permission class that needs at least `role`."""

    class _RolePermission(HasNamespaceToken):
        required_role = role

        def has_permission(self, request, view):
            token = request.auth
            if not isinstance(token, ApiToken):
                return False
            if not token.has_role(role):
                raise exceptions.PermissionDenied(
                    f"This action needs a token with the '{role}' role."
                )
            return True

    _RolePermission.__name__ = f"Requires{role.title()}"
    return _RolePermission


IsReviewer = role_required(Role.REVIEWER)
IsAdmin = role_required(Role.ADMIN)
