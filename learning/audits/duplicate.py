"""Duplicate audit: near-identical to an applied item or to another pending candidate.
Applied duplicates are reported (apply then reinforces the existing strategy instead
of adding a copy); pending duplicates are merged by services.audit."""

from learning.audits.conflict import text_contradiction
from learning.audits.text import (
    content_stems,
    different_names,
    jaccard,
    overlap,
    text_names,
    trigram_similarity,
)

TRIGRAM_DUPLICATE = 0.7
WORDS_DUPLICATE = 0.75
# One text is the other plus an explanation: every word of a long enough shorter one.
CONTAINED_DUPLICATE = 0.95
CONTAINED_MIN_WORDS = 8


def similarity(a: str, b: str) -> float:
    """The larger of pg_trgm similarity and stemmed-word Jaccard."""
    return max(trigram_similarity(a, b), jaccard(content_stems(a), content_stems(b)))


def is_near_duplicate(a: str, b: str, *, a_sign: int = 1, b_sign: int = 1) -> bool:
    if a_sign != b_sign:
        return False
    if different_names(text_names(a), text_names(b)):
        return False  # one template, different reservations or tools
    stems_a, stems_b = content_stems(a), content_stems(b)
    contained = (
        min(len(stems_a), len(stems_b)) >= CONTAINED_MIN_WORDS
        and overlap(stems_a, stems_b) >= CONTAINED_DUPLICATE
    )
    if (
        trigram_similarity(a, b) < TRIGRAM_DUPLICATE
        and jaccard(stems_a, stems_b) < WORDS_DUPLICATE
        and not contained
    ):
        return False
    # Same words, opposite meaning ("do" vs "do not") is a conflict, not a copy.
    return text_contradiction(a, b, my_sign=a_sign, their_sign=b_sign) is None


def duplicate_findings(*, text: str, sign: int, items: list) -> list[dict]:
    findings = []
    seen = set()
    for item in items:
        if (item.type, item.id) in seen:
            continue
        if not is_near_duplicate(text, item.text, a_sign=sign, b_sign=item.sign):
            continue
        seen.add((item.type, item.id))
        score = similarity(text, item.text)
        if item.type == "candidate":
            message = (
                f"Near-identical to {item.label} (similarity {score:.2f}); the newer "
                "one is merged into the older."
            )
        elif item.type == "strategy":
            message = (
                f"Near-identical to applied {item.label} (similarity {score:.2f}); "
                "applying reinforces it instead of adding a copy."
            )
        else:
            message = f"Near-identical to {item.label} (similarity {score:.2f})."
        findings.append(
            {
                "severity": "info",
                "message": message,
                "related": [item.related()],
                "similarity": round(score, 3),
            }
        )
    return findings
