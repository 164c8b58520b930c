"""Writes for playbooks (creation here; apply, edits and rollback build on it)."""
from django.db import transaction
from django.utils.text import slugify

from learning.models import Namespace
from playbooks.models import ChangeKind, Playbook, PlaybookVersion


@transaction.atomic
def playbook_create(
    *,
    namespace: Namespace,
    slug: str,
    name: str = "",
    scope: str = "team",
    mode: str = "propose",
    task_types: list[str] | None = None,
    created_by: str = "system",
) -> Playbook:
    """A new playbook starts at version 1, empty."""
    playbook = Playbook.objects.create(
        namespace=namespace,
        slug=slug,
        name=name or slug,
        scope=scope,
        mode=mode,
        task_types=task_types or [],
        current_version=1,
    )
    PlaybookVersion.objects.create(
        playbook=playbook, number=1, content=[], diff={}, change_kind=ChangeKind.CREATE,
        note="created", created_by=created_by,
    )
    return playbook


def playbook_slug_for_task_type(task_type: str) -> str:
    """`airline.change_flight` feeds the `airline` playbook unless one claims it."""
    head = (task_type or "general").split(".")[0]
    return slugify(head) or "general"


def playbook_for_task_type(
    *, namespace: Namespace, task_type: str, create: bool = True
) -> Playbook | None:
    """The playbook a run of this task type learns into: one that lists the task type,
    else the one named by the task type's first segment (created when missing)."""
    claimed = [
        p for p in Playbook.objects.filter(namespace=namespace)
        if task_type and task_type in (p.task_types or [])
    ]
    if claimed:
        return claimed[0]
    slug = playbook_slug_for_task_type(task_type)
    playbook = Playbook.objects.filter(namespace=namespace, slug=slug).first()
    if playbook is None and create:
        with transaction.atomic():
            playbook = Playbook.objects.select_for_update().filter(
                namespace=namespace, slug=slug
            ).first() or playbook_create(namespace=namespace, slug=slug, name=slug.title())
    return playbook
