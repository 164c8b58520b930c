"""Audits of learning candidates (conflict, hygiene, duplicate) — see learning/audits/."""


def candidate_audit_enqueue(*, candidate) -> None:
    """Queue the audit of a new candidate (on commit)."""


def candidate_audit(*, candidate) -> dict:
    """Run every audit, store `audit`, `audited_at`, `max_severity` on the candidate."""
    return {"conflict": [], "hygiene": [], "duplicate": []}
