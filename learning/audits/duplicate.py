"""Duplicate audit: near-identical to an applied item or to another pending candidate.
Applied duplicates are reported (apply then reinforces the existing strategy instead
of adding a copy); pending duplicates are merged by services.audit."""

from learning.text.similarity import is_near_duplicate, text_similarity


def duplicate_findings(*, lesson, items: list) -> list[dict]:
    """Near-identical items by the one rule (`is_near_duplicate`): never one with the
    opposite polarity or a changed value — that is a conflict."""
    text = lesson.text
    findings = []
    seen = set()
    for item in items:
        if (item.type, item.id) in seen:
            continue
        if not is_near_duplicate(lesson, item.lesson):
            continue
        seen.add((item.type, item.id))
        score = text_similarity(text, item.text)
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
