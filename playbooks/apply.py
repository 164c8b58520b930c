"""Apply an approved candidate: a new playbook version, a memory entry or a skill patch.

Contract (review.services, the one writer of a candidate's status, calls this inside
its transaction, with the candidate row locked and its status already `approved`):

    candidate_apply(*, candidate, actor) -> Applied
        Writes the change (a version, a memory, a skill version) and says what it did;
        review.services then marks the candidate `applied` and records it. On a failure
        the caller must record (skill changed since the patch was made, target missing,
        …) it raises ApplyFailed with the reason; review.services then marks the
        candidate `apply_failed`.

What each kind does:
- strategy_helpful / strategy_harmful / procedure: a new playbook version that adds the
  strategy; or, when the duplicate audit names an active strategy of that playbook,
  reinforces it (helpful_count += evidence, evidence merged) without a copy; or, when
  `replaces_strategy` is set, retires that one and puts the new one in its place.
- preference / durable_fact: a Memory entry (per user when the candidate has a user).
- patch_skill: the unified diff in `patch` (or the full text in `content`) applied to
  the skill, provided its text still hashes to `base_hash`; else ApplyFailed, and
  candidate_rebase re-targets the patch on the current text.
"""

import re
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from learning.models import (
    MEMORY_KINDS,
    CandidateKind,
    CandidateStatus,
    LearningCandidate,
)
from playbooks import memories, services, versions
from playbooks.models import (
    ChangeKind,
    Memory,
    Playbook,
    PlaybookVersion,
    Skill,
    SkillVersion,
    Strategy,
)
from playbooks.recall import lesson_situations
from review.trail import audit_event_record


class ApplyFailed(Exception):
    pass


class AlreadyReverted(ApplyFailed):
    """The applied candidate was reverted before (reopening it needs no second revert)."""


STRATEGY_KINDS = {
    CandidateKind.STRATEGY_HELPFUL: "helpful",
    CandidateKind.STRATEGY_HARMFUL: "harmful",
    CandidateKind.PROCEDURE: "helpful",
}


# --- unified diffs ------------------------------------------------------------------

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


@dataclass
class Hunk:
    old_start: int
    old: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)


def patch_parse(patch: str) -> list[Hunk]:
    hunks: list[Hunk] = []
    for line in (patch or "").splitlines(keepends=True):
        match = _HUNK.match(line)
        if match:
            hunks.append(Hunk(old_start=int(match.group(1))))
            continue
        if not hunks:  # file headers (---/+++) and anything before the first hunk
            continue
        if line.startswith("\\"):
            continue
        body = line[1:] if line[:1] in " +-" else line
        if not body.endswith("\n"):
            body += "\n"
        if line.startswith("+"):
            hunks[-1].new.append(body)
        elif line.startswith("-"):
            hunks[-1].old.append(body)
        else:
            hunks[-1].old.append(body)
            hunks[-1].new.append(body)
    if not hunks:
        raise ApplyFailed("The patch has no hunks (expected a unified diff).")
    return hunks


def _find(
    lines: list[str], block: list[str], start: int, expected: int, fuzzy: bool
) -> int:
    def matches(at: int) -> bool:
        return lines[at : at + len(block)] == block

    if 0 <= expected <= len(lines) and matches(expected) and expected >= start:
        return expected
    if not fuzzy:
        return -1
    spots = [i for i in range(start, len(lines) - len(block) + 1) if matches(i)]
    if not spots:
        return -1
    return min(spots, key=lambda i: abs(i - expected))


def patch_apply(text: str, patch: str, *, fuzzy: bool = False) -> str:
    """Apply a unified diff. Strict: each hunk's old lines must sit where the hunk says
    (after earlier hunks' shifts). Fuzzy (rebase): anywhere after the previous hunk,
    nearest the stated place."""
    lines = versions._lines(text)
    offset = 0
    cursor = 0
    for number, hunk in enumerate(patch_parse(patch), start=1):
        expected = max(hunk.old_start - 1, 0) + offset
        if not hunk.old and hunk.old_start == 0:
            expected = 0
        at = _find(lines, hunk.old, cursor, expected, fuzzy)
        if at < 0:
            raise ApplyFailed(
                f"Hunk {number} of the patch does not match the skill text "
                f"(its context lines are not there)."
            )
        lines[at : at + len(hunk.old)] = hunk.new
        offset += len(hunk.new) - len(hunk.old)
        cursor = at + len(hunk.new)
    return "".join(lines)


# --- planning (shared by preview and apply) ----------------------------------------


@dataclass
class Plan:
    target: str  # playbook | skill | memory
    op: str  # add | reinforce | replace | memory | skill
    playbook: Playbook | None = None
    skill: Skill | None = None
    strategy: Strategy | None = None  # reinforced or replaced
    strategy_type: str = ""
    new_text: str = ""
    error: str = ""
    locked: bool = False  # `playbook` was read FOR UPDATE (applying)


def _evidence_runs(candidate: LearningCandidate) -> list[tuple]:
    """(id, task description) of the candidate's evidence runs, newest first: their
    ids and their situations (oldest first) in one query."""
    if candidate.pk is None:
        return []
    return list(candidate.evidence_runs.values_list("id", "task_description"))


def _evidence_ids(candidate: LearningCandidate, runs=None) -> list[str]:
    runs = _evidence_runs(candidate) if runs is None else runs
    return [str(pk) for pk, _ in runs]


def _situations(candidate: LearningCandidate, runs, known: str = "") -> str:
    return lesson_situations(
        candidate, known, run_tasks=[task for _, task in reversed(runs)]
    )


def _duplicate_strategy_ids(candidate: LearningCandidate) -> list[int]:
    ids = []
    for finding in (candidate.audit or {}).get("duplicate") or []:
        for related in (finding or {}).get("related") or []:
            if (related or {}).get("type") == "strategy":
                try:
                    ids.append(int(related.get("id")))
                except (TypeError, ValueError):
                    continue
    return ids


def _target_playbook(candidate: LearningCandidate, *, lock: bool = False) -> Playbook:
    if candidate.playbook_id:
        playbooks = Playbook.objects.select_related("namespace")
        if lock:  # read once, with versions.playbook_lock's lock
            playbooks = playbooks.select_for_update()
        return playbooks.filter(pk=candidate.playbook_id).first()
    if candidate.task_type:
        return services.playbook_for_task_type(
            namespace=candidate.namespace, task_type=candidate.task_type
        )
    raise ApplyFailed(
        "The candidate names no playbook and no task type to find one by."
    )


def _skill_new_text(candidate: LearningCandidate, skill: Skill) -> str:
    current = versions.text_hash(skill.text)
    if candidate.base_hash and candidate.base_hash != current:
        raise ApplyFailed(
            f"Skill '{skill.slug}' changed since this patch was made (it is at version "
            f"{skill.current_version} now); rebase the candidate on the current text."
        )
    if candidate.patch.strip():
        return patch_apply(skill.text, candidate.patch)
    if not candidate.base_hash:
        raise ApplyFailed(
            "A full-text skill change needs base_hash (the SHA-256 of the text it was "
            "written against)."
        )
    return candidate.content


def _plan(
    candidate: LearningCandidate, replaces: int | None = None, *, lock: bool = False
) -> Plan:
    """What applying would do; `replaces` (a strategy id) overrides the candidate's own
    replacement target, for previews of "approve as a replacement". `lock` (applying,
    inside a transaction) reads a named target playbook FOR UPDATE at once."""
    kind = candidate.kind
    if kind in MEMORY_KINDS:
        return Plan(target="memory", op="memory")
    if kind == CandidateKind.PATCH_SKILL:
        skill = Skill.objects.filter(pk=candidate.skill_id).first()
        if skill is None or skill.namespace_id != candidate.namespace_id:
            raise ApplyFailed("The candidate names no skill to patch.")
        return Plan(
            target="skill",
            op="skill",
            skill=skill,
            new_text=_skill_new_text(candidate, skill),
        )
    if kind not in STRATEGY_KINDS:
        raise ApplyFailed(f"Unknown candidate kind {kind!r}.")
    lock = lock and bool(candidate.playbook_id)
    playbook = _target_playbook(candidate, lock=lock)
    if playbook is None or playbook.namespace_id != candidate.namespace_id:
        raise ApplyFailed("The target playbook is missing.")
    plan = Plan(
        target="playbook",
        op="add",
        playbook=playbook,
        strategy_type=STRATEGY_KINDS[kind],
        locked=lock,
    )
    replaces = replaces or candidate.replaces_strategy_id
    if replaces:
        old = Strategy.objects.filter(
            pk=replaces, playbook=playbook, active=True
        ).first()
        if old is None:
            raise ApplyFailed(
                f"Strategy {replaces} to replace is not an active "
                f"strategy of '{playbook.slug}'."
            )
        plan.op, plan.strategy = "replace", old
        return plan
    dup_ids = _duplicate_strategy_ids(candidate)
    if dup_ids:
        same = Strategy.objects.filter(
            pk__in=dup_ids, playbook=playbook, active=True, type=plan.strategy_type
        )
        match = sorted(same, key=lambda s: dup_ids.index(s.pk))
        if match:
            plan.op, plan.strategy = "reinforce", match[0]
    return plan


def _context_for(candidate: LearningCandidate) -> str:
    parts = []
    if candidate.kind == CandidateKind.PROCEDURE:
        parts.append("procedure")
    if candidate.task_type:
        parts.append(candidate.task_type)
    return "; ".join(parts)


def _shape_of(candidate: LearningCandidate) -> dict[str, str]:
    """The candidate's lesson shape, as the strategy will hold it (a candidate from
    before the shape is read from its text)."""
    if not candidate.directive:
        return {}
    return {
        "polarity": candidate.polarity,
        "when": candidate.when,
        "directive": candidate.directive,
        "why": candidate.why,
    }


def _reinforced(strategy: Strategy, candidate: LearningCandidate) -> dict[str, Any]:
    runs = _evidence_runs(candidate)
    evidence = list(strategy.evidence or [])
    for run_id in _evidence_ids(candidate, runs):
        if run_id not in evidence:
            evidence.append(run_id)
    return {
        "helpful_count": strategy.helpful_count + max(candidate.evidence_count, 1),
        "evidence": evidence,
        "confidence": max(strategy.confidence, candidate.confidence),
        "situations": _situations(candidate, runs, strategy.situations),
    }


# --- preview ------------------------------------------------------------------------


def candidate_apply_preview(
    *, candidate: LearningCandidate, replaces: int | None = None
) -> dict[str, Any]:
    """What applying would change, without writing: {"target", "name", "from_version",
    "to_version", "diff"} (diff: added/removed/changed, or unified text for skills).
    When it could not apply, "error" says why."""
    try:
        plan = _plan(candidate, replaces)
    except ApplyFailed as exc:
        target = (
            "skill"
            if candidate.kind == CandidateKind.PATCH_SKILL
            else ("memory" if candidate.kind in MEMORY_KINDS else "playbook")
        )
        obj = candidate.skill if target == "skill" else candidate.playbook
        return {
            "target": target,
            "name": getattr(obj, "slug", None),
            "from_version": getattr(obj, "current_version", None),
            "to_version": None,
            "diff": {} if target != "skill" else "",
            "error": str(exc),
        }
    if plan.target == "memory":
        scope = "user" if candidate.user_id else (candidate.memory_scope or "namespace")
        return {
            "target": "memory",
            "name": f"user:{candidate.user_id}" if candidate.user_id else scope,
            "from_version": None,
            "to_version": None,
            "diff": {
                "added": [
                    {
                        "kind": candidate.kind,
                        "content": candidate.content,
                        "entity": candidate.entity,
                        "importance": candidate.confidence,
                    }
                ],
                "removed": [],
                "changed": [],
            },
        }
    if plan.target == "skill":
        skill = plan.skill
        return {
            "target": "skill",
            "name": skill.slug,
            "from_version": skill.current_version,
            "to_version": skill.current_version + 1,
            "diff": versions.text_diff(skill.text, plan.new_text, name=skill.slug),
        }
    playbook = plan.playbook
    new_item = {
        "id": None,
        "key": None,
        "type": plan.strategy_type,
        "description": candidate.content.strip(),
    }
    diff: dict[str, list] = {"added": [], "removed": [], "changed": []}
    if plan.op == "reinforce":
        strategy = plan.strategy
        after = _reinforced(strategy, candidate)
        before = versions.strategy_snapshot(strategy)
        diff["changed"].append(
            {
                **versions.diff_brief(before),
                "fields": {
                    k: {"from": before[k], "to": v}
                    for k, v in after.items()
                    if before[k] != v
                },
            }
        )
    else:
        diff["added"].append(new_item)
        if plan.op == "replace":
            diff["removed"].append(
                versions.diff_brief(versions.strategy_snapshot(plan.strategy))
            )
    return {
        "target": "playbook",
        "name": playbook.slug,
        "op": plan.op,
        "from_version": playbook.current_version,
        "to_version": playbook.current_version + 1,
        "diff": diff,
    }


# --- apply --------------------------------------------------------------------------


def _apply_to_playbook(plan: Plan, candidate: LearningCandidate, actor: str) -> int:
    if plan.locked:
        playbook = plan.playbook
    else:
        playbook = versions.playbook_lock(playbook=plan.playbook)
    if plan.op == "reinforce":
        strategy = Strategy.objects.select_for_update().get(pk=plan.strategy.pk)
        if not strategy.active:
            raise ApplyFailed(
                f"Strategy {strategy.pk} to reinforce was retired meanwhile."
            )
        for key, value in _reinforced(strategy, candidate).items():
            setattr(strategy, key, value)
        strategy.save()
        note = (
            f"reinforced strategy {strategy.pk} (+{max(candidate.evidence_count, 1)})"
        )
    else:
        position = None
        if plan.op == "replace":
            old = Strategy.objects.select_for_update().get(pk=plan.strategy.pk)
            if not old.active:
                raise ApplyFailed(
                    f"Strategy {old.pk} to replace was retired meanwhile."
                )
            old.active = False
            old.save(update_fields=["active", "updated_at"])
            position = old.position
        runs = _evidence_runs(candidate)
        try:
            strategy = services.strategy_insert(
                playbook=playbook,
                type=plan.strategy_type,
                description=candidate.content,
                context=_context_for(candidate),
                evidence=_evidence_ids(candidate, runs),
                situations=_situations(candidate, runs),
                confidence=candidate.confidence,
                helpful_count=max(candidate.evidence_count, 1),
                source_candidate=candidate,
                position=position,
                provenance=candidate.provenance,
                **_shape_of(candidate),
            )
        except versions.PlaybookError as exc:
            raise ApplyFailed(str(exc))
        note = (
            f"replaced strategy {plan.strategy.pk} with {strategy.pk}"
            if plan.op == "replace"
            else f"added strategy {strategy.pk}"
        )
    version = versions.playbook_version_commit(
        playbook=playbook,
        change_kind=ChangeKind.APPLY,
        actor=actor,
        note=f"candidate {candidate.pk}: {note}",
        candidate=candidate,
    )
    return version.number


@dataclass(frozen=True)
class Applied:
    """What an apply changed: the version made (None for a memory) and the details
    for the audit trail."""

    version: int | None
    data: dict


def candidate_apply(*, candidate: LearningCandidate, actor: str) -> Applied:
    if candidate.status != CandidateStatus.APPROVED:
        raise ApplyFailed(
            f"Only approved candidates are applied (this one is {candidate.status})."
        )
    # Inside the caller's transaction the target playbook is read once, locked.
    plan = _plan(candidate, lock=transaction.get_connection().in_atomic_block)
    data: dict[str, Any] = {"target": plan.target, "op": plan.op}
    with transaction.atomic():
        if plan.target == "playbook":
            number = _apply_to_playbook(plan, candidate, actor)
            data.update(playbook=plan.playbook.slug, version=number)
        elif plan.target == "skill":
            number = _apply_to_skill(plan, candidate, actor)
            data.update(skill=plan.skill.slug, version=number)
        else:
            memory = _apply_to_memory(candidate)
            number = None
            data.update(memory=memory.pk)
    return Applied(version=number, data=data)


def _apply_to_skill(plan: Plan, candidate: LearningCandidate, actor: str) -> int:
    skill = versions.skill_lock(skill=plan.skill)
    new_text = _skill_new_text(candidate, skill)  # re-checked under the lock
    try:
        version = versions.skill_version_commit(
            skill=skill,
            text=new_text,
            change_kind=ChangeKind.APPLY,
            actor=actor,
            note=f"candidate {candidate.pk}",
            candidate=candidate,
        )
    except versions.PlaybookError as exc:
        raise ApplyFailed(f"The patch changes nothing ({exc}).")
    return version.number


def _apply_to_memory(candidate: LearningCandidate) -> Memory:
    try:
        return memories.memory_create(
            namespace=candidate.namespace,
            kind=candidate.kind,
            content=candidate.content,
            user_id=candidate.user_id,
            entity=candidate.entity,
            importance=candidate.confidence,
            scope=candidate.memory_scope,
            source_candidate=candidate,
        )
    except versions.PlaybookError as exc:
        raise ApplyFailed(str(exc))


# --- rebase and revert -------------------------------------------------------------


@transaction.atomic
def candidate_rebase(*, candidate: LearningCandidate, actor: str) -> LearningCandidate:
    """Re-target a patch_skill candidate on the skill's current text: its hunks are
    placed by their context (fuzzily), the patch is rewritten against the current text
    and base_hash updated. Raises ApplyFailed when the hunks no longer fit."""
    candidate = (
        LearningCandidate.objects.select_for_update(of=("self",))
        .select_related("skill", "namespace")
        .get(pk=candidate.pk)
    )
    if candidate.kind != CandidateKind.PATCH_SKILL:
        raise ApplyFailed("Only patch_skill candidates can be rebased.")
    if candidate.is_terminal or candidate.status == CandidateStatus.APPROVED:
        raise ApplyFailed(f"A {candidate.status} candidate cannot be rebased.")
    skill = candidate.skill
    if skill is None:
        raise ApplyFailed("The candidate names no skill.")
    current_hash = versions.text_hash(skill.text)
    patch = candidate.patch
    if not patch.strip():
        base = next(
            (
                v.text
                for v in SkillVersion.objects.filter(skill=skill)
                if versions.text_hash(v.text) == candidate.base_hash
            ),
            None,
        )
        if base is None:
            raise ApplyFailed("The text this change was written against is unknown.")
        patch = versions.text_diff(base, candidate.content, name=skill.slug)
    new_text = patch_apply(skill.text, patch, fuzzy=True)
    old_hash = candidate.base_hash
    candidate.patch = versions.text_diff(skill.text, new_text, name=skill.slug)
    candidate.base_hash = current_hash
    if not candidate.patch:
        raise ApplyFailed("After rebasing, the patch changes nothing.")
    candidate.apply_error = ""
    candidate.save(update_fields=["patch", "base_hash", "apply_error", "updated_at"])
    audit_event_record(
        namespace=candidate.namespace,
        actor=actor,
        action="rebase",
        target_type="candidate",
        target_id=candidate.pk,
        candidate=candidate,
        data={
            "from_hash": old_hash,
            "to_hash": current_hash,
            "skill_version": skill.current_version,
        },
    )
    return candidate


@transaction.atomic
def candidate_revert(
    *, candidate: LearningCandidate, actor: str, note: str = ""
) -> dict:
    """Undo an applied candidate (e.g. one auto-applied in background mode) from what
    its version recorded: the strategies it added are retired, the one it replaced is
    restored, a reinforcement is taken back — in a new version that `reverts` it; its
    memory is deactivated; its skill version rolled back when nothing changed the
    skill since. The candidate stays `applied`; the audit trail records the revert."""
    candidate = (
        LearningCandidate.objects.select_for_update(of=("self",))
        .select_related("namespace", "playbook", "skill")
        .get(pk=candidate.pk)
    )
    if candidate.status != CandidateStatus.APPLIED:
        raise ApplyFailed("Only applied candidates can be reverted.")
    if candidate.kind in MEMORY_KINDS:
        result = _revert_memory(candidate)
    elif candidate.kind == CandidateKind.PATCH_SKILL:
        result = _revert_skill(candidate, actor=actor)
    else:
        result = _revert_strategies(candidate, actor=actor, note=note)
    audit_event_record(
        namespace=candidate.namespace,
        actor=actor,
        action="revert",
        target_type="candidate",
        target_id=candidate.pk,
        candidate=candidate,
        note=note,
        data=result,
    )
    return result


def _revert_memory(candidate: LearningCandidate) -> dict:
    memories = Memory.objects.filter(source_candidate=candidate)
    if not memories.exists():
        raise ApplyFailed("This candidate made no memory.")
    count = memories.filter(active=True).update(active=False)
    if not count:
        raise AlreadyReverted("This candidate was already reverted.")
    return {"target": "memory", "op": "memory", "deactivated": count}


def _revert_skill(candidate: LearningCandidate, *, actor: str) -> dict:
    made = (
        SkillVersion.objects.filter(candidate=candidate, change_kind=ChangeKind.APPLY)
        .select_related("skill")
        .first()
    )
    if made is None:
        raise ApplyFailed("This candidate made no skill version.")
    skill = versions.skill_lock(skill=made.skill)
    if skill.current_version != made.number:
        raise ApplyFailed(
            f"Skill '{skill.slug}' changed after this patch; edit it by hand."
        )
    version = versions.skill_rollback(skill=skill, number=made.number - 1, actor=actor)
    return {"target": "skill", "op": "skill", "version": version.number}


def _revert_strategies(candidate: LearningCandidate, *, actor: str, note: str) -> dict:
    made = (
        PlaybookVersion.objects.filter(
            candidate=candidate, change_kind=ChangeKind.APPLY
        )
        .select_related("playbook")
        .first()
    )
    if made is None:
        raise ApplyFailed("This candidate made no playbook version.")
    if PlaybookVersion.objects.filter(reverts=made).exists():
        raise AlreadyReverted("This candidate was already reverted.")
    playbook = versions.playbook_lock(playbook=made.playbook)
    diff = made.diff or {}
    keys_added = [item["key"] for item in diff.get("added", []) if item.get("key")]
    keys_removed = [item["key"] for item in diff.get("removed", []) if item.get("key")]
    live = {str(s.key): s for s in Strategy.objects.filter(playbook=playbook)}
    for key in keys_added:
        strategy = live.get(key)
        if strategy is not None and strategy.active:
            strategy.active = False
            strategy.save(update_fields=["active", "updated_at"])
    for key in keys_removed:
        strategy = live.get(key)
        if strategy is not None and not strategy.active:
            strategy.active = True
            strategy.save(update_fields=["active", "updated_at"])
    for item in diff.get("changed", []):
        _reinforcement_undo(live.get(item.get("key") or ""), item.get("fields") or {})
    ops = {"added": bool(keys_added), "removed": bool(keys_removed)}
    op = (
        "replace"
        if all(ops.values())
        else "add"
        if ops["added"]
        else "reinforce"
        if diff.get("changed")
        else "none"
    )
    version = versions.playbook_version_commit(
        playbook=playbook,
        change_kind=ChangeKind.EDIT,
        actor=actor,
        note=note or f"reverted candidate {candidate.pk} (version {made.number})",
        allow_empty=True,
        reverts=made,
    )
    return {
        "target": "playbook",
        "op": op,
        "playbook": playbook.slug,
        "version": version.number,
        "reverted_version": made.number,
    }


def _reinforcement_undo(strategy: Strategy | None, fields: dict) -> None:
    """Take back what a reinforcement added (counts by their delta; confidence and
    evidence only where nothing changed them since)."""
    if strategy is None:
        return
    delta = fields.get("helpful_count")
    if delta:
        strategy.helpful_count = max(
            0, strategy.helpful_count - (delta["to"] - delta["from"])
        )
    confidence = fields.get("confidence")
    if confidence and strategy.confidence == confidence["to"]:
        strategy.confidence = confidence["from"]
    evidence = fields.get("evidence")
    if evidence:
        added = set(evidence["to"] or []) - set(evidence["from"] or [])
        strategy.evidence = [e for e in strategy.evidence or [] if e not in added]
    strategy.save()
