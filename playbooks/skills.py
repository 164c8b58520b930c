"""Skills: named procedure texts, created and edited by hand (each edit a new version)."""

from django.db import transaction
from django.utils.text import slugify

from learning.models import Namespace
from playbooks.models import (
    ChangeKind,
    Skill,
    SkillVersion,
)
from playbooks.versions import (
    PlaybookError,
    skill_lock,
    skill_version_commit,
    text_diff,
    text_hash,
)
from review.trail import audit_event_record


@transaction.atomic
def skill_create(
    *, namespace: Namespace, slug: str, name: str = "", text: str = "", actor: str
) -> Skill:
    slug = (slug or "").strip()
    if not slug or slugify(slug) != slug:
        raise PlaybookError("Use lowercase letters, digits and hyphens.", field="slug")
    if Skill.objects.filter(namespace=namespace, slug=slug).exists():
        raise PlaybookError(
            f"A skill '{slug}' already exists in this namespace.",
            field="slug",
            code="duplicate",
        )
    skill = Skill.objects.create(
        namespace=namespace, slug=slug, name=name or slug, text=text, current_version=1
    )
    SkillVersion.objects.create(
        skill=skill,
        number=1,
        text=text,
        diff=text_diff("", text, name=slug),
        change_kind=ChangeKind.CREATE,
        note="created",
        created_by=actor,
    )
    audit_event_record(
        namespace=namespace,
        actor=actor,
        action="skill_create",
        target_type="skill",
        target_id=slug,
        data={"version": 1, "hash": text_hash(text)},
    )
    return skill


@transaction.atomic
def skill_update(
    *,
    skill: Skill,
    text: str,
    actor: str,
    note: str = "",
    audit_findings: list | None = None,
) -> SkillVersion:
    """A hand edit of a skill's text (`audit_findings`: what the audit said of it,
    saved anyway, recorded in the audit event)."""
    skill = skill_lock(skill=skill)
    return skill_version_commit(
        skill=skill,
        text=text,
        change_kind=ChangeKind.EDIT,
        actor=actor,
        note=note,
        audit_findings=audit_findings,
    )
