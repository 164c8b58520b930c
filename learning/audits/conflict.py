"""Conflict audit: does a candidate contradict curated knowledge (or a pending
candidate) on the same subject? The reading of the texts is `learning.text.
contradiction`; this module picks what to compare and words the findings."""

from learning.text.contradiction import text_analyses, text_contradiction

COMMON_MIN_ITEMS = 8
COMMON_SHARE = 0.3


def scope_common_words(texts: list[str]) -> frozenset:
    """Subject words in more than COMMON_SHARE of the compared texts: in a scope of
    generated lessons ("the evaluator expected …") they are template, not topic."""
    if len(texts) < COMMON_MIN_ITEMS:
        return frozenset()
    counts: dict[str, int] = {}
    for text in texts:
        for word in frozenset().union(*(a.subject for a in text_analyses(text, 1))):
            counts[word] = counts.get(word, 0) + 1
    return frozenset(w for w, n in counts.items() if n / len(texts) > COMMON_SHARE)


def conflict_findings(*, text: str, sign: int, items: list) -> list[dict]:
    """One finding per contradicted item (severity warn: a reviewer decides, with
    both texts side by side)."""
    common = scope_common_words([item.text for item in items])
    findings = []
    for item in items:
        found = text_contradiction(
            text, item.text, my_sign=sign, their_sign=item.sign, common=common
        )
        if not found:
            continue
        findings.append(
            {
                "severity": "warn",
                "message": f"Contradicts {item.label}: {found.detail}.",
                "related": [item.related()],
                "kind": found.kind,
            }
        )
    return findings
