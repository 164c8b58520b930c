"""API tokens: created here, stored hashed, shown once."""

from django.db import transaction

from learning.models import ApiToken, Namespace, Role


def namespace_get_or_create(*, slug: str) -> Namespace:
    namespace, _ = Namespace.objects.get_or_create(slug=slug, defaults={"name": slug})
    return namespace


@transaction.atomic
def token_create(*, name: str, namespace_slug: str, role: str) -> tuple[ApiToken, str]:
    """Create a token; returns it and the raw key (the only time the key is known)."""
    if role not in Role.values:
        raise ValueError(f"unknown role {role!r}; use one of {', '.join(Role.values)}")
    namespace = namespace_get_or_create(slug=namespace_slug)
    raw = ApiToken.generate_key()
    token = ApiToken.objects.create(
        namespace=namespace,
        name=name,
        role=role,
        key_prefix=raw[:10],
        key_hash=ApiToken.hash_key(raw),
    )
    return token, raw
