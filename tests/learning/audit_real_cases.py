"""The audits' real-output set: candidates the offline reflector made from the
development data in fixtures/ (tau-bench airline, SWE-agent, ReAct HotpotQA) and the
pairs of them the conflict and duplicate audits have to judge, labelled by reading.

- `audit_real_candidates.json`: drawn by `scripts/audit_real_set.py` (which commit,
  which reflector, which set and runs each came from; the agents' system prompts as
  their policies);
- `audit_real_labels.json`: the label of each candidate (hygiene or clean) and pair
  (conflict, duplicate or clean), by key, with a note saying why.

Each candidate is a case of its own (nothing else in scope; its set's policy is the
agent's policy); each pair is the newer candidate audited with the older pending. A
drawn case without a label (the reflector changed since) is left out and counted.
Used by `python manage.py audit_eval` and tests/learning/test_audit_eval.py."""

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
CANDIDATES = HERE / "audit_real_candidates.json"
LABELS = HERE / "audit_real_labels.json"
FIELDS = (
    "kind",
    "content",
    "polarity",
    "when",
    "directive",
    "why",
    "entity",
    "user_id",
    "memory_scope",
)


def _spec(row: dict) -> dict:
    return {f: row.get(f) or "" for f in FIELDS}


def _existing(row: dict) -> dict:
    return {"type": "candidate", "text": row["content"], **_spec(row)}


def load_real_cases() -> tuple[list[dict], dict]:
    """(cases, about): the labelled cases, and where they came from."""
    drawn = json.loads(CANDIDATES.read_text())
    labels = json.loads(LABELS.read_text())["labels"]
    rows = {row["key"]: row for row in drawn["candidates"]}
    policies = drawn.get("policies") or {}
    cases, unlabelled = [], 0
    for row in drawn["candidates"]:
        label = labels.get(row["key"])
        if label is None:
            unlabelled += 1
            continue
        cases.append(
            {
                "id": f"real-{row['key']}",
                "domain": row["set"],
                "expect": label["expect"],
                "candidate": _spec(row),
                "existing": [],
                "agent_policy": policies.get(row["set"], ""),
                "source": {"runs": row["runs"], "note": label["note"]},
            }
        )
    for pair in drawn["pairs"]:
        label = labels.get(pair["key"])
        if label is None:
            unlabelled += 1
            continue
        new, old = rows[pair["candidate"]], rows[pair["existing"]]
        cases.append(
            {
                "id": f"real-pair-{pair['key']}",
                "domain": pair["set"],
                "expect": label["expect"],
                "candidate": _spec(new),
                "existing": [_existing(old)],
                "agent_policy": policies.get(pair["set"], ""),
                "source": {"runs": new["runs"] + old["runs"], "note": label["note"]},
            }
        )
    about = {
        "drawn_at_commit": drawn.get("drawn_at_commit", ""),
        "reflector": drawn.get("reflector", []),
        "unlabelled": unlabelled,
        "candidates": sum(1 for c in cases if not c["existing"]),
        "pairs": sum(1 for c in cases if c["existing"]),
    }
    return cases, about
