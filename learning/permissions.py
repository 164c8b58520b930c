"""Console access: a user's role in a namespace comes from Membership rows
(superusers are admins everywhere). Views check this; templates never do."""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet

from learning.models import ROLE_RANK, Membership, Namespace, Role


def user_namespaces(user, *, min_role: str = Role.REVIEWER) -> QuerySet[Namespace]:
    """The namespaces where `user` has at least `min_role`."""
    if not user.is_authenticated:
        return Namespace.objects.none()
    if user.is_superuser:
        return Namespace.objects.all()
    roles = [role for role, rank in ROLE_RANK.items() if rank >= ROLE_RANK[min_role]]
    return Namespace.objects.filter(memberships__user=user, memberships__role__in=roles)


def user_role(user, namespace: Namespace) -> str | None:
    if not user.is_authenticated:
        return None
    if user.is_superuser:
        return Role.ADMIN
    return (
        Membership.objects.filter(user=user, namespace=namespace)
        .values_list("role", flat=True)
        .first()
    )


def user_has_role(user, namespace: Namespace, role: str) -> bool:
    current = user_role(user, namespace)
    return current is not None and ROLE_RANK[current] >= ROLE_RANK[role]


def console_role_required(role: str = Role.REVIEWER):
    """Login, then at least `role` in some namespace (per-object checks stay in the
    view: use user_has_role for the object's namespace)."""

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not user_namespaces(request.user, min_role=role).exists():
                raise PermissionDenied(f"You need the {role} role in a namespace.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
