"""Audit findings as data: their stable ids, their dismissals and the severity that
still stands. Pure functions over the report a candidate stores (`audit`), used by the
audit (which writes it), review (dismissals, bulk approval) and the console.

A finding's id is a hash of what it says (audit, rule, message, related items and
their texts), so the same finding gets the same id on every re-audit and a dismissal
survives while the finding is unchanged; a changed finding is a new one.

Severity after dismissals: a dismissed `info` or `warn` no longer counts; a dismissed
`block` still does — it records the reviewer's reason for the admin, but only an
admin's override at approval lifts a block."""

import hashlib
import json

AUDITS = ("conflict", "hygiene", "duplicate")
DISMISS_ACTION = "finding_dismiss"  # the audit-trail action of a dismissal
SEVERITY_RANK = {"": 0, "info": 1, "warn": 2, "block": 3}


def finding_id(audit: str, finding: dict) -> str:
    """Twelve hex characters naming what the finding says."""
    related = [
        [str(r.get("type", "")), str(r.get("id", "")), str(r.get("text", ""))]
        for r in finding.get("related") or []
    ]
    basis = json.dumps(
        [
            audit,
            finding.get("rule") or finding.get("kind") or "",
            finding.get("severity", ""),
            finding.get("message", ""),
            related,
        ],
        ensure_ascii=False,
    )
    return hashlib.sha256(basis.encode()).hexdigest()[:12]


def findings_identify(report: dict) -> dict:
    """Give every finding of a report its id (in place); returns the report."""
    for audit in AUDITS:
        for finding in report.get(audit) or []:
            finding["id"] = finding_id(audit, finding)
    return report


def findings_all(report: dict | None):
    """(audit, finding) for every finding of a report."""
    for audit in AUDITS:
        for finding in (report or {}).get(audit) or []:
            yield audit, finding


def finding_find(report: dict | None, fid: str):
    """(audit, finding) with this id, or (None, None)."""
    for audit, finding in findings_all(report):
        if finding.get("id") == fid:
            return audit, finding
    return None, None


def dismissals_apply(report: dict, dismissals: dict) -> dict:
    """Mark the findings a reviewer dismissed (`dismissals`: finding id -> {"by",
    "at", "reason"}) in a fresh report (in place); returns the report."""
    for _audit, finding in findings_all(report):
        dismissal = dismissals.get(finding.get("id"))
        if dismissal:
            finding["dismissed"] = dismissal
        else:
            finding.pop("dismissed", None)
    return report


def finding_counts(finding: dict) -> bool:
    """Whether a finding still weighs on the decision: not dismissed, or a block."""
    return not finding.get("dismissed") or finding.get("severity") == "block"


def report_max_severity(report: dict | None) -> str:
    """The worst severity that still stands ("" when none does)."""
    worst = ""
    for _audit, finding in findings_all(report):
        severity = finding.get("severity", "")
        if not finding_counts(finding):
            continue
        if SEVERITY_RANK.get(severity, 0) > SEVERITY_RANK[worst]:
            worst = severity
    return worst


def open_findings(report: dict | None, *, at_least: str = "warn") -> list[dict]:
    """The findings at or above `at_least` nobody dismissed."""
    floor = SEVERITY_RANK[at_least]
    return [
        finding
        for _audit, finding in findings_all(report)
        if not finding.get("dismissed")
        and SEVERITY_RANK.get(finding.get("severity", ""), 0) >= floor
    ]
