"""Audits of learning candidates (conflict, hygiene, duplicate) — see learning/audits/.

`candidate_audit_enqueue` runs after a candidate is created (a Django-Q2 task on
commit); `candidate_audit` stores the report on the candidate (each finding with its
stable id, and the reviewer's dismissals carried over from the audit trail), merges a
near-identical pending candidate into the older one, and hands clean candidates to
background-mode auto-apply. Findings stay true: `candidates_related_pending` and
`candidates_affected_by_version` say which pending candidates to audit again when a
related candidate is decided or their playbook gets a new version (the tasks in
learning/audit_tasks.py). `curated_text_audit` runs the same audits on a strategy or
skill an admin is about to save."""

import logging
import re

from django.db import transaction
from django.db.models import CharField
from django.db.models.expressions import RawSQL
from django.utils import timezone

from learning.audits.cache import (
    POLICY_DIGEST_SQL,
    digest_supported,
    namespace_policies,
)
from learning.audits.conflict import conflict_findings
from learning.audits.duplicate import duplicate_findings
from learning.audits.hygiene import hygiene_findings, policy_for_namespace
from learning.audits.scope import (
    MAX_ROWS,
    candidate_lesson,
    candidate_text,
    curated_items_prefetch,
    pending_candidate_items,
    policy_items,
    scope_items,
)
from learning.findings import (
    DISMISS_ACTION,
    dismissals_apply,
    finding_id,
    findings_all,
    findings_identify,
    report_max_severity,
)
from learning.models import CandidateKind, CandidateStatus, LearningCandidate, Severity
from learning.queue import task_enqueue_on_commit, task_run_here, task_send
from review.models import AuditEvent
from review.services import candidate_supersede

logger = logging.getLogger(__name__)

AUDIT_TASK = "learning.audit_tasks.candidate_audit_task"
AUDIT_SET_TASK = "learning.audit_tasks.candidates_audit_task"
MERGED_REAUDIT_TASK = "learning.audit_tasks.candidates_merged_reaudit_task"


def candidate_audit_enqueue(*, candidate) -> None:
    """Queue the audit of a new candidate once the transaction that made it commits."""
    task_enqueue_on_commit(
        AUDIT_TASK,
        candidate.pk,
        task_name=f"audit-candidate-{candidate.pk}",
        group="audit",
    )


def candidates_audit_enqueue(*, candidates) -> None:
    """Queue the audits of candidates made together (a set of runs reflected in one
    task) as one task, once the transaction that made them commits."""
    ids = [c.pk for c in candidates]
    if len(ids) == 1:
        candidate_audit_enqueue(candidate=candidates[0])
    elif ids:
        task_enqueue_on_commit(
            AUDIT_SET_TASK, ids, task_name=f"audit-candidates-{ids[0]}", group="audit"
        )


def candidates_audit_after_commit(*, candidates) -> None:
    """Audit candidates made together in this process, once the transaction that made
    them commits: the reflection task audits its own set (no second trip through the
    broker before a candidate is audited). Should that fail, the set is queued as a
    task (an audit done again stores the same report)."""
    ids = [c.pk for c in candidates]
    if not ids:
        return

    def run():
        try:
            task_run_here(AUDIT_SET_TASK, ids)
        except Exception:  # noqa: BLE001 - the worker audits them instead
            logger.exception("auditing %d candidates in place failed", len(ids))
            task_send(
                AUDIT_SET_TASK,
                ids,
                task_name=f"audit-candidates-{ids[0]}",
                group="audit",
            )

    transaction.on_commit(run)


def audit_report_build(*, candidate, curated: dict | None = None) -> dict:
    """The three audits of one candidate, without storing anything. The namespace's
    policies come from this process's cache when the candidate was read with their
    digest (`policy_digest`, see learning/audits/cache.py), else from the database."""
    hygiene_policy, agent_policies = namespace_policies(
        candidate.namespace_id, getattr(candidate, "policy_digest", None)
    )
    lesson = candidate_lesson(candidate)
    items = scope_items(candidate, curated)
    conflict = conflict_findings(lesson=lesson, items=items)
    # Contradicting the agent's own policy blocks: only an admin can override it.
    conflict += conflict_findings(
        lesson=lesson,
        items=policy_items(candidate, agent_policies),
        severity=Severity.BLOCK,
    )
    contradicted = {
        (rel["type"], rel["id"], rel["text"]) for f in conflict for rel in f["related"]
    }
    duplicate = duplicate_findings(
        lesson=lesson,
        items=[i for i in items if (i.type, i.id, i.text[:500]) not in contradicted],
    )
    hygiene = hygiene_findings(text=lesson.text, policy=hygiene_policy)
    return findings_identify(
        {"conflict": conflict, "hygiene": hygiene, "duplicate": duplicate}
    )


def candidate_dismissals(*, candidate) -> dict:
    """The findings reviewers dismissed on this candidate (from the audit trail, so a
    dismissal outlives the report): finding id -> {"by", "at", "reason"}."""
    return candidates_dismissals(candidate_ids=[candidate.pk]).get(candidate.pk, {})


def candidates_dismissals(*, candidate_ids: list[int]) -> dict:
    """`candidate_dismissals` of many candidates in one query: {pk: {finding id: …}}."""
    out: dict = {}
    for event in AuditEvent.objects.filter(
        candidate_id__in=candidate_ids, action=DISMISS_ACTION
    ).order_by("created_at", "id"):
        fid = (event.data or {}).get("finding_id")
        if fid:
            out.setdefault(event.candidate_id, {})[fid] = {
                "by": event.actor,
                "at": event.created_at.isoformat(),
                "reason": event.note,
            }
    return out


def _audit_rows():
    """Candidates as an audit reads them: with skill and playbook, and (PostgreSQL)
    the digest of their namespace's policies, which lets `namespace_policies` serve
    them from this process's cache only while they are unchanged."""
    rows = LearningCandidate.objects.select_related("skill", "playbook")
    if digest_supported():
        rows = rows.annotate(
            policy_digest=RawSQL(POLICY_DIGEST_SQL, [], output_field=CharField())
        )
    return rows


def candidates_audit(
    *, candidate_ids: list[int], after=None, after_wanted=None
) -> dict:
    """The audits of a set of candidates (those one set of runs made), in order, as
    `candidate_audit` makes them one by one, with the set's reads done once: the
    candidates in one query, their dismissals in one, and the curated strategies,
    memories and pending candidates each is compared with in one query per source
    (`curated_items_prefetch`). `after(candidate)` runs after each audit (the learning
    mode's say) and returns True when it changed the curated knowledge (applied the
    candidate): the candidates after it then look their curated items up again, so
    each audit still sees what is curated when it runs. `after_wanted(candidate)`,
    when given, says without the database whether `after` would act on it at all.
    Reports that name no other pending candidate are stored together
    (`_ReportWrites`), before anything that reads stored reports runs. Returns {pk:
    report}."""
    by_pk = {c.pk: c for c in _audit_rows().filter(pk__in=candidate_ids)}
    found = [by_pk[pk] for pk in dict.fromkeys(candidate_ids) if pk in by_pk]
    curated = curated_items_prefetch(found)
    dismissed = candidates_dismissals(candidate_ids=[c.pk for c in found])
    reports, merged = {}, []
    with _ReportWrites() as writes:
        for candidate in found:
            reports[candidate.pk], superseded = _candidate_audit(
                candidate=candidate,
                curated=curated.get(candidate.pk),
                dismissals=dismissed.get(candidate.pk, {}),
                reaudit_merged=False,
                writes=writes,
            )
            merged += superseded
            acts = after is not None and (
                after_wanted is None or after_wanted(candidate)
            )
            if acts:
                writes.flush()
            if acts and after(candidate):
                curated = {}
            elif superseded:
                _pending_forget(curated, set(superseded))
    if merged:
        # what a merge's own re-audit does (`candidate_related_reaudit`), one task for
        # the set's merges
        task_enqueue_on_commit(
            MERGED_REAUDIT_TASK,
            merged,
            task_name=f"reaudit-merged-{merged[0]}",
            group="audit",
        )
    return reports


class _ReportWrites:
    """Audit reports to store, written as one UPDATE (`bulk_update`) when flushed —
    before an audit that locks and reads other candidates' reports, before the
    learning mode's say, and when the set is done (also when an audit raises: what
    was audited stays stored)."""

    FIELDS = ["audit", "audited_at", "max_severity", "updated_at"]

    def __init__(self):
        self.rows: list = []

    def add(self, candidate, *, report: dict, max_severity, now) -> None:
        candidate.audit, candidate.max_severity = report, max_severity
        candidate.audited_at = candidate.updated_at = now
        self.rows.append(candidate)

    def flush(self) -> None:
        if self.rows:
            LearningCandidate.objects.bulk_update(self.rows, self.FIELDS)
            self.rows = []

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.flush()


def _pending_forget(curated: dict, superseded: set) -> None:
    """The candidates merged away leave the set's pending look-ups, which are then
    what a new look-up would find — except a full one (MAX_ROWS rows), where a row
    past its cut moves up: that one is looked up again by the audit that reads it."""
    for entry in curated.values():
        items = entry.get("pending")
        if items is None or not any(item.id in superseded for item in items):
            continue
        if len(items) >= MAX_ROWS:
            entry.pop("pending")
        else:
            entry["pending"] = [item for item in items if item.id not in superseded]


def candidate_audit(
    *, candidate, loaded: bool = False, curated=None, dismissals=None
) -> dict:
    """Run every audit, store `audit`, `audited_at`, `max_severity` on the candidate.
    (`candidates_audit` hands in the candidate as `_audit_rows` read it, `loaded`,
    with its curated items and dismissals.)"""
    if not loaded:
        candidate = _audit_rows().get(pk=candidate.pk)
    with _ReportWrites() as writes:
        return _candidate_audit(
            candidate=candidate, curated=curated, dismissals=dismissals, writes=writes
        )[0]


def _candidate_audit(
    *,
    candidate,
    curated=None,
    dismissals=None,
    writes: _ReportWrites,
    reaudit_merged: bool = True,
) -> tuple[dict, list[int]]:
    """`candidate_audit` of a candidate as `_audit_rows` read it: (the report, the
    candidates it merged away). A report naming no other pending candidate joins
    `writes` (stored when they are flushed, with a set's others): nothing to lock
    with it, nothing to merge or mirror."""
    report = dismissals_apply(
        audit_report_build(candidate=candidate, curated=curated),
        candidate_dismissals(candidate=candidate) if dismissals is None else dismissals,
    )
    max_severity = report_max_severity(report)
    related = [
        *_related_candidate_ids(report["duplicate"]),
        *_related_candidate_ids(report["conflict"]),
    ]
    now = timezone.now()
    if not related:
        writes.add(candidate, report=report, max_severity=max_severity, now=now)
        return report, []
    writes.flush()  # the locked rows below are read with their reports
    superseded: list[int] = []
    with transaction.atomic():
        # Lock this candidate and any pending duplicate in one ordered query, so two
        # audits merging the same pair at once wait for each other instead of
        # deadlocking.
        rows = {
            row.pk: row
            for row in LearningCandidate.objects.select_for_update()
            .filter(pk__in=[candidate.pk, *related])
            .order_by("pk")
        }
        locked = rows[candidate.pk]
        locked.audit = report
        locked.audited_at = now
        locked.max_severity = max_severity
        locked.save(update_fields=["audit", "audited_at", "max_severity", "updated_at"])
        if locked.status == CandidateStatus.PENDING:
            duplicates = set(_related_candidate_ids(report["duplicate"]))
            superseded = _merge_pending_duplicates(
                candidate=locked,
                rows={pk: rows[pk] for pk in duplicates if pk in rows},
                reaudit=reaudit_merged,
            )
            if locked.status == CandidateStatus.PENDING:  # not merged away
                _mirror_conflicts(
                    candidate=locked, findings=report["conflict"], rows=rows
                )
    return report, superseded


def _related_candidate_ids(findings: list[dict]) -> list[int]:
    return [
        rel["id"]
        for finding in findings
        for rel in finding["related"]
        if rel["type"] == "candidate"
    ]


def _mirror_conflicts(*, candidate, findings: list[dict], rows: dict) -> None:
    """A conflict between two pending candidates shows on both: the other one (when
    already audited) gets the finding too, pointing back, so whichever a reviewer
    opens first shows the pair side by side."""
    for finding in findings:
        for rel in finding["related"]:
            other = rows.get(rel["id"]) if rel["type"] == "candidate" else None
            if (
                other is None
                or other.status != CandidateStatus.PENDING
                or not other.audit
            ):
                continue
            existing = other.audit.get("conflict") or []
            if any(
                r.get("type") == "candidate" and r.get("id") == candidate.pk
                for f in existing
                for r in f.get("related", [])
            ):
                continue
            mirrored = {
                "severity": finding["severity"],
                "message": _mirrored_message(candidate, finding),
                "related": [
                    {
                        "type": "candidate",
                        "id": candidate.pk,
                        "text": candidate.content[:500],
                    }
                ],
                "kind": finding.get("kind", ""),
            }
            mirrored["id"] = finding_id("conflict", mirrored)
            other.audit = {**other.audit, "conflict": [*existing, mirrored]}
            other.max_severity = report_max_severity(other.audit)
            other.save(update_fields=["audit", "max_severity", "updated_at"])


def _mergeable(a, b) -> bool:
    """A fact is the state of one thing at one time: two facts merge only when they
    say the same (a reservation cancelled in one run and changed in another are two
    facts, not one seen twice). Lessons merge when near-identical."""
    if a.kind != CandidateKind.DURABLE_FACT:
        return True
    return _words(a.content) == _words(b.content)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9_]+", (text or "").lower())


def _mirrored_message(candidate, finding: dict) -> str:
    """The finding as the other candidate reads it: "Pending candidate #7 says …;
    this says …"."""
    this_says, other_says = finding.get("this_says"), finding.get("other_says")
    if not (this_says and other_says):
        return f"Contradicted by pending candidate #{candidate.pk}."
    return (
        f"Pending candidate #{candidate.pk} says {this_says}; this says {other_says}"
        f"{finding.get('mirror_suffix', '')}."
    )


def _merge_pending_duplicates(*, candidate, rows: dict, reaudit: bool = True) -> list:
    """A near-identical pending candidate of the same kind and target: the newer of
    the two is superseded by the older, which takes over its evidence. `rows` are the
    locked candidates; `reaudit` as `candidate_supersede`'s. Returns the pks merged
    away."""
    others = sorted(
        (
            row
            for pk, row in rows.items()
            if pk != candidate.pk
            and row.status == CandidateStatus.PENDING
            and row.kind == candidate.kind
            and _mergeable(candidate, row)
        ),
        key=lambda c: (c.created_at, c.pk),
    )
    superseded = []
    for other in others:
        older, newer = sorted([candidate, other], key=lambda c: (c.created_at, c.pk))
        candidate_supersede(newer=newer, survivor=older, reaudit=reaudit)
        superseded.append(newer.pk)
        if newer.pk == candidate.pk:
            break
    return superseded


# --- findings stay true: which pending candidates to audit again ----------------------

# At most this many changed strategies of one version are looked up (a rollback can
# change a whole playbook; its first changes are enough to refresh the findings
# reviewers are reading now).
VERSION_TEXTS_MAX = 50


def _mentions(report: dict | None, related_type: str, ids: set) -> bool:
    for _audit, finding in findings_all(report):
        for rel in finding.get("related") or []:
            if rel.get("type") == related_type and rel.get("id") in ids:
                return True
    return False


def candidates_related_pending(*, candidate_ids: list[int]) -> list[int]:
    """Pending candidates whose findings may change now that these candidates were
    decided: those their own reports name, and those whose report names one of them
    — found by the look-up the audit itself uses (they share its subject; one query
    for all of them, `curated_items_prefetch`), then read."""
    decided = list(LearningCandidate.objects.filter(pk__in=candidate_ids))
    if not decided:
        return []
    named = {
        rel.get("id")
        for candidate in decided
        for _audit, finding in findings_all(candidate.audit)
        for rel in finding.get("related") or []
        if rel.get("type") == "candidate"
    }
    found = curated_items_prefetch(decided, sources=("pending",))
    near = {
        item.id
        for candidate in decided
        for item in (
            found[candidate.pk]["pending"]
            if candidate.pk in found
            else pending_candidate_items(candidate, candidate_text(candidate))
        )
    }
    rows = LearningCandidate.objects.filter(
        pk__in=named | near, status=CandidateStatus.PENDING
    ).only("id", "audit")
    ids = {candidate.pk for candidate in decided}
    return sorted(
        row.pk
        for row in rows
        if row.pk in named or _mentions(row.audit, "candidate", ids)
    )


def candidates_affected_by_version(*, playbook_id: int, number: int) -> list[int]:
    """Pending candidates of a playbook whose findings a new version may change:
    those about the subject of a strategy it added, changed or retired (the audit's
    own look-up, from each text), audited before the version was made."""
    from playbooks.models import PlaybookVersion

    version = (
        PlaybookVersion.objects.filter(playbook_id=playbook_id, number=number)
        .select_related("playbook")
        .first()
    )
    if version is None:
        return []
    texts = []
    for item in [*version.diff.get("added", []), *version.diff.get("removed", [])]:
        texts.append(item.get("description") or "")
    for item in version.diff.get("changed", []):
        texts.append(item.get("description") or "")
        before = (item.get("fields") or {}).get("description", {}).get("from")
        texts.append(before or "")
    probe = LearningCandidate(
        namespace_id=version.playbook.namespace_id,
        playbook=version.playbook,
        kind="strategy_helpful",
    )
    ids: set[int] = set()
    for text in [t for t in texts if t.strip()][:VERSION_TEXTS_MAX]:
        ids |= {item.id for item in pending_candidate_items(probe, text)}
    return sorted(
        LearningCandidate.objects.filter(
            pk__in=ids, status=CandidateStatus.PENDING, playbook_id=playbook_id
        )
        .exclude(audited_at__gt=version.created_at)
        .values_list("pk", flat=True)
    )


# A change to a skill or to the agent's policy re-audits the pending candidates it
# concerns, at most this many (the newest first) per change.
REAUDIT_MAX = 500


def candidates_of_skill(*, skill_id: int) -> list[int]:
    """Pending patches of a skill (they are checked against the skill's lines)."""
    return list(
        LearningCandidate.objects.filter(
            skill_id=skill_id, status=CandidateStatus.PENDING
        )
        .order_by("-created_at", "-id")
        .values_list("pk", flat=True)[:REAUDIT_MAX]
    )


def candidates_in_policy_scope(*, namespace_id: int, playbook_id) -> list[int]:
    """Pending candidates the agent's policy of a namespace (or one playbook)
    applies to."""
    qs = LearningCandidate.objects.filter(
        namespace_id=namespace_id, status=CandidateStatus.PENDING
    )
    if playbook_id:
        qs = qs.filter(playbook_id=playbook_id)
    return list(
        qs.order_by("-created_at", "-id").values_list("pk", flat=True)[:REAUDIT_MAX]
    )


# --- strategies and skills edited by hand --------------------------------------------


def curated_text_audit(
    *,
    namespace,
    text: str,
    playbook=None,
    skill=None,
    strategy_id: int | None = None,
    type: str = "helpful",
    polarity: str = "",
    when: str = "",
    directive: str = "",
) -> dict:
    """The audits of a strategy (in `playbook`) or a skill's new text (`skill`) an
    admin is about to save, as they would run on a candidate: hygiene, the agent's
    policy (block), conflicts with the other curated items (the strategy being edited,
    `strategy_id`, left out; for a skill, its lines the edit keeps) and duplicates.
    Nothing is stored: the edit views and API show the findings before saving, and
    record those the admin saved anyway (`curated_findings_summary`)."""
    from learning.lessons import lesson_render, shape_or_parse
    from playbooks.versions import text_diff

    if skill is not None:
        probe = LearningCandidate(
            namespace=namespace,
            kind="patch_skill",
            skill=skill,
            content="",
            patch=text_diff(skill.text or "", text or "", name=skill.slug),
        )
    else:
        kind = "strategy_harmful" if type == "harmful" else "strategy_helpful"
        shape, _classified = shape_or_parse(
            content=text or "",
            kind=kind,
            polarity=polarity,
            when=when,
            directive=directive,
        )
        rendered = lesson_render(
            polarity=shape.polarity, when=shape.when, directive=shape.directive
        )
        probe = LearningCandidate(
            namespace=namespace,
            playbook=playbook,
            kind=kind,
            content=rendered if (directive or not text) else text,
            polarity=shape.polarity,
            when=shape.when,
            directive=shape.directive,
        )
    lesson = candidate_lesson(probe)
    if not lesson.text.strip():
        return findings_identify({"conflict": [], "hygiene": [], "duplicate": []})
    items = [
        item
        for item in scope_items(probe)
        if not (item.type == "strategy" and item.id == strategy_id)
        and item.type != "candidate"  # pending candidates are re-audited on save
    ]
    conflict = conflict_findings(lesson=lesson, items=items)
    conflict += conflict_findings(
        lesson=lesson, items=policy_items(probe), severity=Severity.BLOCK
    )
    contradicted = {(r["type"], r["id"]) for f in conflict for r in f["related"]}
    duplicate = duplicate_findings(
        lesson=lesson,
        items=[i for i in items if (i.type, i.id) not in contradicted],
    )
    hygiene = hygiene_findings(
        text=lesson.text, policy=policy_for_namespace(namespace.pk)
    )
    return findings_identify(
        {"conflict": conflict, "hygiene": hygiene, "duplicate": duplicate}
    )


def curated_findings_summary(report: dict) -> list[dict]:
    """The findings of a hand edit that stand at warn or block, as the audit event of
    the saved version records them."""
    return [
        {
            "audit": audit,
            "id": finding.get("id", ""),
            "severity": finding.get("severity", ""),
            "message": finding.get("message", ""),
        }
        for audit, finding in findings_all(report)
        if finding.get("severity") in (Severity.WARN, Severity.BLOCK)
    ]
