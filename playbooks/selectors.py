"""Reads for playbooks, versions, skills, memories and policy (one query shape each)."""

from django.db.models import Count, Prefetch, Q, QuerySet

from learning.models import Namespace
from playbooks.models import (
    HygienePolicy,
    Memory,
    Playbook,
    PlaybookVersion,
    Rollout,
    Skill,
    SkillVersion,
    Strategy,
)


def playbook_list(
    *, namespace: Namespace | None = None, namespaces: QuerySet[Namespace] | None = None
) -> QuerySet[Playbook]:
    """Playbooks (of one namespace, or of several) with their active strategy count and
    flagged version numbers (two queries for the whole list)."""
    qs = Playbook.objects.select_related("namespace")
    qs = (
        qs.filter(namespace=namespace)
        if namespace is not None
        else qs.filter(namespace__in=namespaces)
    )
    return (
        qs.annotate(
            strategy_count=Count("strategies", filter=Q(strategies__active=True))
        )
        .prefetch_related(
            Prefetch(
                "versions",
                queryset=PlaybookVersion.objects.filter(flagged=True).only(
                    "id", "playbook_id", "number"
                ),
                to_attr="flagged_version_rows",
            )
        )
        .order_by("namespace__slug", "slug")
    )


def playbook_flagged_numbers(playbook: Playbook) -> list[int]:
    rows = getattr(playbook, "flagged_version_rows", None)
    if rows is None:
        rows = playbook.versions.filter(flagged=True).only("number")
    return sorted(v.number for v in rows)


def playbook_get(*, namespace: Namespace, slug: str) -> Playbook:
    """Raises Playbook.DoesNotExist for another namespace's playbook."""
    return Playbook.objects.select_related("namespace").get(
        namespace=namespace, slug=slug
    )


def strategy_list(
    *, playbook: Playbook, include_retired: bool = False
) -> QuerySet[Strategy]:
    qs = Strategy.objects.filter(playbook=playbook)
    if not include_retired:
        qs = qs.filter(active=True)
    return qs.order_by("-active", "position", "id")


def version_list(*, playbook: Playbook) -> QuerySet[PlaybookVersion]:
    return (
        PlaybookVersion.objects.filter(playbook=playbook)
        .defer("content")
        .order_by("-number")
    )


def rollouts_by_canary(*, playbook: Playbook) -> dict[int, list[Rollout]]:
    """The playbook's rollouts keyed by their canary's version number, oldest first
    (one query; the history page shows each version's trials)."""
    out: dict[int, list[Rollout]] = {}
    for item in (
        Rollout.objects.filter(playbook=playbook)
        .defer("overlay", "horizon")
        .order_by("started_at", "id")
    ):
        out.setdefault(item.canary, []).append(item)
    return out


def version_get(*, playbook: Playbook, number: int) -> PlaybookVersion:
    return PlaybookVersion.objects.get(playbook=playbook, number=number)


def skill_list(*, namespace: Namespace) -> QuerySet[Skill]:
    return Skill.objects.filter(namespace=namespace).order_by("slug")


def skill_get(*, namespace: Namespace, slug: str) -> Skill:
    return Skill.objects.select_related("namespace").get(namespace=namespace, slug=slug)


def skill_version_list(*, skill: Skill) -> QuerySet[SkillVersion]:
    return SkillVersion.objects.filter(skill=skill).order_by("-number")


def memory_list(
    *, namespace: Namespace, user_id: str | None = None, include_inactive: bool = False
) -> QuerySet[Memory]:
    qs = Memory.objects.filter(namespace=namespace)
    if user_id is not None:
        qs = qs.filter(user_id=user_id)
    if not include_inactive:
        qs = qs.filter(active=True)
    return qs.order_by("-importance", "-created_at", "-id")


def agent_policy_text(*, namespace: Namespace, playbook=None) -> str:
    """The agent's policy of a namespace (or of one playbook), "" when none is set."""
    from playbooks.models import AgentPolicy

    row = AgentPolicy.objects.filter(namespace=namespace, playbook=playbook).first()
    return row.text if row else ""


def policy_get(*, namespace: Namespace) -> HygienePolicy:
    """The namespace's policy (an unsaved empty one when none was set)."""
    return HygienePolicy.objects.filter(namespace=namespace).first() or HygienePolicy(
        namespace=namespace
    )
