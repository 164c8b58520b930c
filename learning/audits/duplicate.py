"""Duplicate audit: near-identical to an applied item or to another pending candidate.
Applied duplicates are reported (apply then reinforces the existing strategy instead
of adding a copy); pending duplicates are merged by services.audit."""

from learning.text.similarity import is_near_duplicate, text_similarity


def duplicate_findings(*, text: str, sign: int, items: list) -> list[dict]:
    findings = []
    seen = set()
    for item in items:
        if (item.type, item.id) in seen:
            continue
        if not is_near_duplicate(text, item.text, a_sign=sign, b_sign=item.sign):
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
