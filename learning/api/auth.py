"""Bearer-token authentication: every token belongs to one namespace and has a role."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from learning.access import role_for, token_allows, token_lookup
from learning.models import ApiToken


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
        token = token_lookup(parts[1])
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        return TokenUser(token), token

    def authenticate_header(self, request):
        return self.keyword


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = BearerTokenAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer"}


class HasNamespaceToken(permissions.BasePermission):
    """Any valid token: the floor for every API view (the agent role)."""

    def has_permission(self, request, view):
        return isinstance(request.auth, ApiToken)


def require(request, action: str) -> None:
    """Refuse (403, naming the role) a token below the role `action` needs
    (`learning.access.ACTIONS`)."""
    token = request.auth
    if not isinstance(token, ApiToken):
        raise exceptions.NotAuthenticated()
    if not token_allows(token, action):
        raise exceptions.PermissionDenied(
            f"This action needs a token with the '{role_for(action)}' role."
        )


def allows(action: str):
    """A permission class for views whose every method is `action`."""

    class _Allows(HasNamespaceToken):
        def has_permission(self, request, view):
            require(request, action)
            return True

    _Allows.__name__ = f"Allows_{action.replace('.', '_')}"
    return _Allows
