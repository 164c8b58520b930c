"""Who may do what: one role table for the API and the console, and the one lookup of
a raw API token. Roles rank agent < reviewer < admin; each can do what the ones below
it can. API tokens carry their role; console users get theirs per namespace from a
Membership (superusers are admins everywhere). Views and API views check an action
here; templates never decide access."""

from django.db.models import QuerySet
from django.utils import timezone

from learning.models import ROLE_RANK, ApiToken, Membership, Namespace, Role

# The lowest role that may take each action, whichever way in (API, console, MCP).
ACTIONS: dict[str, str] = {
    # agents: runs in, lessons out
    "runs.write": Role.AGENT,
    "runs.read": Role.AGENT,
    "feedback.add": Role.AGENT,
    "candidates.read": Role.AGENT,
    "candidates.propose": Role.AGENT,
    "playbooks.read": Role.AGENT,
    "recall": Role.AGENT,
    # reviewers: decide candidates, read everything in their namespace
    "console.use": Role.REVIEWER,
    "candidates.review": Role.REVIEWER,
    "candidates.revert": Role.REVIEWER,
    "findings.dismiss": Role.REVIEWER,
    "candidates.reopen": Role.REVIEWER,  # back to pending (an applied one reverted)
    "exports.read": Role.REVIEWER,
    # admins: change curated knowledge and policy by hand
    "candidates.override": Role.ADMIN,
    "playbooks.edit": Role.ADMIN,
    "rollout.manage": Role.ADMIN,  # rollout policy, promote, abort
    "skills.edit": Role.ADMIN,
    "policy.edit": Role.ADMIN,
    "webhooks.manage": Role.ADMIN,
    "memories.edit": Role.ADMIN,
    "guidelines.edit": Role.ADMIN,  # the namespace's reviewing guidelines
    "reasons.edit": Role.ADMIN,  # canned denial reasons and decision tags
}


def role_for(action: str) -> str:
    """The lowest role allowed to take `action` (a KeyError names an unknown one)."""
    return ACTIONS[action]


def role_allows(role: str | None, action: str) -> bool:
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[role_for(action)]


# --- API tokens -----------------------------------------------------------------------

LAST_USED_EVERY = 60  # seconds: last_used_at is written at most this often


def token_lookup(raw: str, *, touch: bool = True) -> ApiToken | None:
    """The live (not revoked) token with this raw key, with its namespace; None for an
    unknown or revoked one. `touch` records the use (at most once a minute)."""
    raw = (raw or "").strip()
    if not raw:
        return None
    token = (
        ApiToken.objects.select_related("namespace")
        .filter(key_hash=ApiToken.hash_key(raw), revoked_at__isnull=True)
        .first()
    )
    if token is not None and touch:
        now = timezone.now()
        if (
            token.last_used_at is None
            or (now - token.last_used_at).total_seconds() > LAST_USED_EVERY
        ):
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
            token.last_used_at = now
    return token


def token_allows(token: ApiToken | None, action: str) -> bool:
    return token is not None and role_allows(token.role, action)


# --- console users --------------------------------------------------------------------


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


def user_allows(user, namespace: Namespace, action: str) -> bool:
    return role_allows(user_role(user, namespace), action)


def user_namespaces(user, *, action: str = "console.use") -> QuerySet[Namespace]:
    """The namespaces where `user` may take `action`."""
    if not user.is_authenticated:
        return Namespace.objects.none()
    if user.is_superuser:
        return Namespace.objects.all()
    floor = ROLE_RANK[role_for(action)]
    roles = [role for role, rank in ROLE_RANK.items() if rank >= floor]
    return Namespace.objects.filter(memberships__user=user, memberships__role__in=roles)
