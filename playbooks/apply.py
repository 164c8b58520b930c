"""Apply an approved candidate: a new playbook version, a memory entry or a skill patch.

Contract (review.services calls this inside its transaction, with the candidate row
locked and its status already `approved`):

    candidate_apply(*, candidate, actor) -> None
        On success sets candidate.status = "applied", applied_at, applied_version and
        writes an AuditEvent(action="apply"). On a failure the caller must record
        (skill changed since the patch was made, target missing, …) raise ApplyFailed
        with the reason; review.services then marks the candidate `apply_failed`.
"""


class ApplyFailed(Exception):
    pass


def candidate_apply(*, candidate, actor: str) -> None:
    raise ApplyFailed("Applying candidates is not available yet.")
