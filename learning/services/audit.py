"""Audits of learning candidates (conflict, hygiene, duplicate) — see learning/audits/.

`candidate_audit_enqueue` runs after a candidate is created (a Django-Q2 task on
commit); `candidate_audit` stores the report on the candidate, merges a near-identical
pending candidate into the older one, and hands clean candidates to background-mode
auto-apply."""

import re

from django.db import transaction
from django.utils import timezone

from learning.audits.conflict import conflict_findings
from learning.audits.duplicate import duplicate_findings
from learning.audits.hygiene import hygiene_findings, policy_for_namespace
from learning.audits.scope import candidate_sign, candidate_text, scope_items
from learning.models import CandidateKind, CandidateStatus, LearningCandidate, Severity
from learning.queue import task_enqueue_on_commit
from review.services import candidate_supersede

SEVERITY_RANK = {
    Severity.NONE: 0,
    Severity.INFO: 1,
    Severity.WARN: 2,
    Severity.BLOCK: 3,
}
AUDIT_TASK = "learning.audit_tasks.candidate_audit_task"


def candidate_audit_enqueue(*, candidate) -> None:
    """Queue the audit of a new candidate once the transaction that made it commits."""
    task_enqueue_on_commit(
        AUDIT_TASK,
        candidate.pk,
        task_name=f"audit-candidate-{candidate.pk}",
        group="audit",
    )


def audit_report_build(*, candidate) -> dict:
    """The three audits of one candidate, without storing anything."""
    text = candidate_text(candidate)
    sign = candidate_sign(candidate)
    items = scope_items(candidate)
    conflict = conflict_findings(text=text, sign=sign, items=items)
    contradicted = {
        (rel["type"], rel["id"], rel["text"]) for f in conflict for rel in f["related"]
    }
    duplicate = duplicate_findings(
        text=text,
        sign=sign,
        items=[i for i in items if (i.type, i.id, i.text[:500]) not in contradicted],
    )
    policy = policy_for_namespace(candidate.namespace_id)
    hygiene = hygiene_findings(text=text, policy=policy)
    return {"conflict": conflict, "hygiene": hygiene, "duplicate": duplicate}


def report_max_severity(report: dict) -> str:
    worst = Severity.NONE
    for findings in report.values():
        for finding in findings:
            severity = finding.get("severity", "")
            if SEVERITY_RANK.get(severity, 0) > SEVERITY_RANK[worst]:
                worst = Severity(severity)
    return str(worst)


def candidate_audit(*, candidate) -> dict:
    """Run every audit, store `audit`, `audited_at`, `max_severity` on the candidate."""
    candidate = LearningCandidate.objects.select_related("skill", "playbook").get(
        pk=candidate.pk
    )
    report = audit_report_build(candidate=candidate)
    max_severity = report_max_severity(report)
    with transaction.atomic():
        # Lock this candidate and any pending duplicate in one ordered query, so two
        # audits merging the same pair at once wait for each other instead of
        # deadlocking.
        rows = {
            row.pk: row
            for row in LearningCandidate.objects.select_for_update()
            .filter(
                pk__in=[
                    candidate.pk,
                    *_related_candidate_ids(report["duplicate"]),
                    *_related_candidate_ids(report["conflict"]),
                ]
            )
            .order_by("pk")
        }
        locked = rows[candidate.pk]
        locked.audit = report
        locked.audited_at = timezone.now()
        locked.max_severity = max_severity
        locked.save(update_fields=["audit", "audited_at", "max_severity", "updated_at"])
        if locked.status == CandidateStatus.PENDING:
            duplicates = set(_related_candidate_ids(report["duplicate"]))
            _merge_pending_duplicates(
                candidate=locked, rows={pk: rows[pk] for pk in duplicates if pk in rows}
            )
            if locked.status == CandidateStatus.PENDING:  # not merged away
                _mirror_conflicts(
                    candidate=locked, findings=report["conflict"], rows=rows
                )
    return report


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
                "message": f"Contradicted by pending {candidate.kind} candidate "
                f"#{candidate.pk}.",
                "related": [
                    {
                        "type": "candidate",
                        "id": candidate.pk,
                        "text": candidate.content[:500],
                    }
                ],
                "kind": finding.get("kind", ""),
            }
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


def _merge_pending_duplicates(*, candidate, rows: dict) -> None:
    """A near-identical pending candidate of the same kind and target: the newer of
    the two is superseded by the older, which takes over its evidence. `rows` are the
    locked candidates."""
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
    for other in others:
        older, newer = sorted([candidate, other], key=lambda c: (c.created_at, c.pk))
        candidate_supersede(newer=newer, survivor=older)
        if newer.pk == candidate.pk:
            return
