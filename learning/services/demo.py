"""The demo namespace's console users and agent token (used by `load_demo`)."""

from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import transaction

from learning.access import token_lookup
from learning.models import Membership, Namespace, Role
from learning.services.tokens import token_create

# (username, password, role in the demo namespace)
DEMO_USERS = (
    ("reviewer", "reviewer-demo", Role.REVIEWER),
    ("admin", "admin-demo", Role.ADMIN),
)
DEMO_TOKEN_NAME = "demo-agent"


@transaction.atomic
def demo_users_ensure(*, namespace: Namespace) -> list:
    """Create the demo console users once (an existing user keeps its password) and
    give them their role in ``namespace``. The admin is also Django staff, so the
    Django admin at /admin/ works for it."""
    User = get_user_model()
    users = []
    for username, password, role in DEMO_USERS:
        user, created = User.objects.get_or_create(username=username)
        if created:
            user.set_password(password)
        if role == Role.ADMIN:
            user.is_staff = True
            user.is_superuser = True
        user.save()
        Membership.objects.update_or_create(
            user=user, namespace=namespace, defaults={"role": role}
        )
        users.append(user)
    return users


def demo_agent_token_ensure(*, namespace: Namespace, path: Path) -> tuple[str, bool]:
    """The demo agent token: the one in ``path`` if it is still valid for
    ``namespace``, else a new one written there. Returns (raw token, created)."""
    if path.is_file():
        raw = path.read_text().strip()
        token = token_lookup(raw, touch=False)
        if token is not None and token.namespace_id == namespace.pk:
            return raw, False
    _token, raw = token_create(
        name=DEMO_TOKEN_NAME, namespace_slug=namespace.slug, role=Role.AGENT
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(raw + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)
    return raw, True
