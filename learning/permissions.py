"""Console access, on the one role table of `learning.access`: login, then the action's
role in some namespace (per-object checks stay in the view: `user_allows` for the
object's namespace). Templates never decide access."""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied

from learning.access import role_for, user_allows, user_namespaces, user_role

__all__ = ["console_action_required", "user_allows", "user_namespaces", "user_role"]


def console_action_required(action: str = "console.use"):
    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not user_namespaces(request.user, action=action).exists():
                raise PermissionDenied(
                    f"You need the {role_for(action)} role in a namespace."
                )
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
