"""Versions of playbooks and skills: snapshots, diffs, the one commit of a new immutable
version (with its audit row and its label: production at once, or the canary of a
staged rollout — `playbooks.quality.version_committed_label`), row locks and rollback.
Every change — apply, hand edit, merge, curation, revert, rollback — ends in
`playbook_version_commit` or `skill_version_commit`."""

import difflib
import hashlib
import re
import uuid
from typing import Any

from django.db import transaction
from django.db.models import Max

from learning.queue import task_enqueue_on_commit
from playbooks.models import (
    ChangeKind,
    Playbook,
    PlaybookVersion,
    Skill,
    SkillVersion,
    Strategy,
)
from playbooks.quality import version_committed_label
from review.trail import audit_event_record

# The fields of a strategy a version snapshot holds (besides id and key).
SNAPSHOT_FIELDS = (
    "type",
    "description",
    "context",
    "evidence",
    "confidence",
    "helpful_count",
    "harmful_count",
    "position",
    "polarity",
    "when",
    "directive",
    "why",
    "provenance",
    "situations",
)
# Versions made before the lesson shape have no such keys: restore them empty.
_SNAPSHOT_DEFAULTS = {
    "polarity": "",
    "when": "",
    "directive": "",
    "why": "",
    "provenance": "",
    "situations": "",
}


class PlaybookError(ValueError):
    """Bad input for a playbook/skill change; `field` names what was wrong."""

    def __init__(self, message: str, *, field: str = "detail", code: str = "invalid"):
        super().__init__(message)
        self.field = field
        self.code = code


def strategy_snapshot(strategy: Strategy) -> dict[str, Any]:
    item = {"id": strategy.pk, "key": str(strategy.key)}
    for field in SNAPSHOT_FIELDS:
        item[field] = getattr(strategy, field)
    item["evidence"] = list(item["evidence"] or [])
    item["source_candidate"] = strategy.source_candidate_id
    return item


def playbook_snapshot(*, playbook: Playbook) -> list[dict[str, Any]]:
    """The active strategies in order, as a version's content."""
    return [
        strategy_snapshot(s)
        for s in Strategy.objects.filter(playbook=playbook, active=True).order_by(
            "position", "id"
        )
    ]


def diff_brief(item: dict) -> dict:
    return {
        "id": item.get("id"),
        "key": item.get("key"),
        "type": item.get("type"),
        "description": item.get("description"),
    }


def content_diff(old: list[dict], new: list[dict]) -> dict[str, list]:
    """added / removed / changed between two snapshots, matched by strategy key."""
    old_by = {i["key"]: i for i in old}
    new_by = {i["key"]: i for i in new}
    added = [diff_brief(i) for k, i in new_by.items() if k not in old_by]
    removed = [diff_brief(i) for k, i in old_by.items() if k not in new_by]
    changed = []
    for key, item in new_by.items():
        before = old_by.get(key)
        if before is None:
            continue
        fields = {
            f: {"from": before.get(f), "to": item.get(f)}
            for f in SNAPSHOT_FIELDS
            if before.get(f) != item.get(f)
        }
        if fields:
            changed.append({**diff_brief(item), "fields": fields})
    return {"added": added, "removed": removed, "changed": changed}


def diff_is_empty(diff: dict) -> bool:
    return not any(diff.get(k) for k in ("added", "removed", "changed"))


def text_hash(text: str) -> str:
    return hashlib.sha256((text or "").encode()).hexdigest()


def text_diff(old: str, new: str, *, name: str = "skill") -> str:
    return "".join(
        difflib.unified_diff(
            _lines(old), _lines(new), fromfile=f"a/{name}", tofile=f"b/{name}"
        )
    )


_WORDS = re.compile(r"\S+|\s+")


def word_diff(old: str, new: str) -> list[tuple[str, str]]:
    """A word-level diff of an edit: [(op, text)] in order, op "" (unchanged), "del"
    or "ins" — what the console shows for a changed strategy or candidate text."""
    a, b = _WORDS.findall(old or ""), _WORDS.findall(new or "")
    parts: list[tuple[str, str]] = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            parts.append(("", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            parts.append(("del", "".join(a[i1:i2])))
        if j2 > j1:
            parts.append(("ins", "".join(b[j1:j2])))
    return parts


def _lines(text: str) -> list[str]:
    lines = (text or "").splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return lines


def playbook_version_commit(
    *,
    playbook: Playbook,
    change_kind: str,
    actor: str,
    note: str = "",
    candidate=None,
    rolled_back_to: int | None = None,
    allow_empty: bool = False,
    reverts: PlaybookVersion | None = None,
    audit_findings: list | None = None,
) -> PlaybookVersion:
    """Snapshot the live strategies as the next version, with its diff, its label and
    audit row (with `audit_findings`: the audit findings of a hand edit an admin saved
    anyway). The diff is against `current_version` (the content the live rows had).
    Callers hold the playbook row lock (playbook_lock) and run inside a transaction."""
    previous = PlaybookVersion.objects.filter(
        playbook=playbook, number=playbook.current_version
    ).first()
    content = playbook_snapshot(playbook=playbook)
    diff = content_diff(previous.content if previous else [], content)
    if diff_is_empty(diff) and not allow_empty:
        raise PlaybookError("Nothing changed.", code="no_change")
    number = (
        PlaybookVersion.objects.filter(playbook=playbook).aggregate(n=Max("number"))[
            "n"
        ]
        or 0
    ) + 1
    version = PlaybookVersion.objects.create(
        playbook=playbook,
        number=number,
        content=content,
        diff=diff,
        change_kind=change_kind,
        note=note,
        created_by=actor,
        candidate=candidate,
        rolled_back_to=rolled_back_to,
        reverts=reverts,
    )
    playbook.current_version = number
    version_committed_label(
        playbook=playbook,
        version=version,
        change_kind=change_kind,
        actor=actor,
        previous=previous,
    )
    playbook.save(update_fields=["current_version", "production_version", "updated_at"])
    # The pending candidates compared with what changed are audited again (handed
    # back to the audit stage through the queue).
    task_enqueue_on_commit(
        "learning.audit_tasks.playbook_version_reaudit_task",
        playbook.pk,
        number,
        task_name=f"reaudit-playbook-{playbook.pk}-v{number}",
        group="audit",
    )
    audit_event_record(
        namespace=playbook.namespace,
        actor=actor,
        action=f"playbook_{change_kind}",
        target_type="playbook",
        target_id=playbook.slug,
        candidate=candidate,
        note=note,
        data={
            "version": number,
            "label": "production"
            if playbook.production_version == number
            else "canary",
            "added": len(diff["added"]),
            "removed": len(diff["removed"]),
            "changed": len(diff["changed"]),
            **({"audit_findings": audit_findings} if audit_findings else {}),
        },
    )
    return version


def playbook_lock(*, playbook: Playbook) -> Playbook:
    """Re-read the playbook FOR UPDATE: version numbers are handed out one at a time."""
    return (
        Playbook.objects.select_for_update()
        .select_related("namespace")
        .get(pk=playbook.pk)
    )


def playbook_restore_content(*, playbook: Playbook, content: list[dict]) -> None:
    """Make the live strategies equal `content` (rows matched by key; the rest retired)."""
    wanted = {item["key"]: item for item in content}
    rows = {str(s.key): s for s in Strategy.objects.filter(playbook=playbook)}
    for key, strategy in rows.items():
        if key not in wanted and strategy.active:
            strategy.active = False
            strategy.save(update_fields=["active", "updated_at"])
    for key, item in wanted.items():
        strategy = rows.get(key) or Strategy(playbook=playbook, key=uuid.UUID(key))
        for field in SNAPSHOT_FIELDS:
            setattr(strategy, field, item.get(field, _SNAPSHOT_DEFAULTS.get(field)))
        strategy.evidence = list(item.get("evidence") or [])
        strategy.active = True
        if strategy.pk is None:
            strategy.source_candidate_id = item.get("source_candidate")
        strategy.save()


@transaction.atomic
def playbook_rollback(
    *, playbook: Playbook, number: int, actor: str, note: str = ""
) -> PlaybookVersion:
    """A new version whose content equals version `number`'s. It becomes production at
    once, even with a rollout policy (a running rollout ends rolled back)."""
    playbook = playbook_lock(playbook=playbook)
    target = PlaybookVersion.objects.filter(playbook=playbook, number=number).first()
    if target is None:
        raise PlaybookError(f"No version {number}.", field="version", code="not_found")
    playbook_restore_content(playbook=playbook, content=target.content)
    return playbook_version_commit(
        playbook=playbook,
        change_kind=ChangeKind.ROLLBACK,
        actor=actor,
        note=note or f"rolled back to version {number}",
        rolled_back_to=number,
        allow_empty=True,
    )


def skill_lock(*, skill: Skill) -> Skill:
    return (
        Skill.objects.select_for_update().select_related("namespace").get(pk=skill.pk)
    )


def skill_version_commit(
    *,
    skill: Skill,
    text: str,
    change_kind: str,
    actor: str,
    note: str = "",
    candidate=None,
    allow_empty: bool = False,
    audit_findings: list | None = None,
) -> SkillVersion:
    """The next version of a locked skill with its unified diff and audit row (with
    the audit findings of a hand edit an admin saved anyway)."""
    if text == skill.text and not allow_empty:
        raise PlaybookError("Nothing changed.", field="text", code="no_change")
    number = (
        SkillVersion.objects.filter(skill=skill).aggregate(n=Max("number"))["n"] or 0
    ) + 1
    version = SkillVersion.objects.create(
        skill=skill,
        number=number,
        text=text,
        diff=text_diff(skill.text, text, name=skill.slug),
        change_kind=change_kind,
        note=note,
        created_by=actor,
        candidate=candidate,
    )
    before = text_hash(skill.text)
    skill.text = text
    skill.current_version = number
    skill.save(update_fields=["text", "current_version", "updated_at"])
    task_enqueue_on_commit(
        "learning.audit_tasks.skill_reaudit_task",
        skill.pk,
        task_name=f"reaudit-skill-{skill.pk}-v{number}",
        group="audit",
    )
    audit_event_record(
        namespace=skill.namespace,
        actor=actor,
        action=f"skill_{change_kind}",
        target_type="skill",
        target_id=skill.slug,
        candidate=candidate,
        note=note,
        data={
            "version": number,
            "from_hash": before,
            "to_hash": text_hash(text),
            **({"audit_findings": audit_findings} if audit_findings else {}),
        },
    )
    return version


@transaction.atomic
def skill_rollback(*, skill: Skill, number: int, actor: str) -> SkillVersion:
    skill = skill_lock(skill=skill)
    target = SkillVersion.objects.filter(skill=skill, number=number).first()
    if target is None:
        raise PlaybookError(f"No version {number}.", field="version", code="not_found")
    return skill_version_commit(
        skill=skill,
        text=target.text,
        change_kind=ChangeKind.ROLLBACK,
        actor=actor,
        note=f"rolled back to version {number}",
        allow_empty=True,
    )
