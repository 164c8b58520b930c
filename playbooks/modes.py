"""Learning modes: background mode applies clean, confident candidates at once."""


def candidate_consider_auto_apply(*, candidate) -> bool:
    """Called after a candidate's audit. Returns True when it was applied."""
    return False
