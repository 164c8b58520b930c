"""Draw the audits' real-output set from the reflector: import the development sets in
fixtures/ (tau-bench airline, SWE-agent, ReAct HotpotQA) into throwaway namespaces,
let reflection and the audits run as in a worker (Django-Q2 sync mode), and write
every candidate the reflector made, and the pairs the audits have to judge, to
tests/learning/audit_real_candidates.json — with where each came from (set, runs,
reflector version, commit). Labels are kept apart, by key, in
tests/learning/audit_real_labels.json (written by reading the pairs), so drawing the
set again after the reflector changed keeps every label whose texts did not change.

    bash scripts/with_postgres.sh .venv/bin/python scripts/audit_real_set.py

Pairs: two candidates of one target (playbook, or user and entity for memories) that
the audits merged or flagged, or that are among the three most alike for either side
(text similarity at least 0.4, or facts about one entity): the hard cases for the
conflict and duplicate audits; far-apart pairs say nothing about them."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["Q_SYNC"] = "true"
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from learning.importers import runs_import  # noqa: E402
from learning.models import LearningCandidate, Namespace  # noqa: E402
from learning.services.tokens import namespace_get_or_create  # noqa: E402
from learning.text.similarity import text_similarity  # noqa: E402

OUT = ROOT / "tests" / "learning" / "audit_real_candidates.json"
FIXTURES = ROOT / "fixtures"
SETS = [
    # name, format, path, task type, take the system message as the agent's policy
    ("tau-bench airline", "tau-bench", "tau-bench/gpt-4o-airline.json.gz", None, True),
    ("SWE-agent", "swe-agent", "swe-agent", None, True),
    (
        "ReAct HotpotQA",
        "react-log",
        "react-hotpotqa/react_base_100_questions_5_trials.txt.gz",
        None,
        False,
    ),
]
PAIR_SIMILARITY = 0.4
PAIRS_PER_CANDIDATE = 3
SHAPE = ("polarity", "when", "directive", "why")


def key_of(kind: str, content: str) -> str:
    return hashlib.sha1(f"{kind}|{content}".encode()).hexdigest()[:12]


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _target(c) -> str:
    if c.kind in ("preference", "durable_fact"):
        return f"memory:{c.user_id}:{c.memory_scope}"
    return f"playbook:{c.playbook_id}"


def _row(c, set_name: str) -> dict:
    evidence = sorted(
        {e.trajectory.external_id for e in c.evidence.all() if e.trajectory_id}
    )
    return {
        "key": key_of(c.kind, c.content),
        "set": set_name,
        "kind": c.kind,
        "content": c.content,
        **{f: getattr(c, f) for f in SHAPE},
        "entity": c.entity,
        "user_id": c.user_id,
        "memory_scope": c.memory_scope,
        "status": c.status,
        "runs": evidence,
        "reflector": c.reflection.reflector if c.reflection_id else "",
        "prompt_version": c.reflection.prompt_version if c.reflection_id else "",
        "audit_flags": sorted(k for k, v in (c.audit or {}).items() if v),
    }


def _related(c) -> set[int]:
    ids = set()
    for findings in (c.audit or {}).values():
        for finding in findings or []:
            for rel in finding.get("related") or []:
                if rel.get("type") == "candidate":
                    ids.add(rel.get("id"))
    if c.superseded_by_id:
        ids.add(c.superseded_by_id)
    return ids


def _closest(c, group: list) -> list:
    """The candidates of `group` most like `c` (same entity, or similar text)."""
    scored = []
    for other in group:
        if other.pk == c.pk or other.content == c.content:
            continue
        same_entity = bool(c.entity) and c.entity == other.entity
        score = text_similarity(c.content, other.content)
        if score >= PAIR_SIMILARITY or same_entity:
            scored.append((score + same_entity, other))
    scored.sort(key=lambda t: -t[0])
    return [other for _score, other in scored[:PAIRS_PER_CANDIDATE]]


def _pairs(candidates: list, rows: dict) -> list[dict]:
    by_target: dict[str, list] = {}
    for c in candidates:
        by_target.setdefault(_target(c), []).append(c)
    chosen: dict[tuple, str] = {}
    for group in by_target.values():
        for c in group:
            for other in _closest(c, group):
                chosen.setdefault(tuple(sorted((c.pk, other.pk))), "similar")
            for pk in _related(c):
                if pk in rows and pk != c.pk:
                    chosen[tuple(sorted((c.pk, pk)))] = "audited"
    out, seen = [], set()
    for (a, b), why in sorted(chosen.items()):
        first, second = rows[a], rows[b]
        pair_key = "-".join(sorted((first["key"], second["key"])))
        if first["key"] == second["key"] or pair_key in seen:
            continue  # copies of one text (merged candidates) make one pair
        seen.add(pair_key)
        # the older one is what the newer is compared with
        out.append(
            {
                "key": pair_key,
                "candidate": second["key"],
                "existing": first["key"],
                "why": why,
            }
        )
    return out


def main() -> None:
    commit = _commit()
    every, pairs, policies = {}, [], {}
    for set_name, fmt, rel, task_type, policy in SETS:
        slug = "real-" + "".join(ch for ch in set_name.lower() if ch.isalnum())[:40]
        Namespace.objects.filter(slug=slug).delete()
        ns = namespace_get_or_create(slug=slug)
        runs_import(
            path=FIXTURES / rel,
            fmt=fmt,
            namespace=ns,
            agent=f"real-{fmt}",
            domain=task_type,
            policy_from_system=policy,
            actor="audit_real_set",
        )
        from playbooks.models import AgentPolicy

        row = AgentPolicy.objects.filter(namespace=ns, playbook=None).first()
        if row:
            policies[set_name] = row.text
        candidates = list(
            LearningCandidate.objects.filter(namespace=ns)
            .select_related("reflection")
            .prefetch_related("evidence__trajectory")
            .order_by("created_at", "id")
        )
        rows = {c.pk: _row(c, set_name) for c in candidates}
        for r in rows.values():
            every.setdefault(r["key"], r)
        for pair in _pairs(candidates, rows):
            pair["set"] = set_name
            pairs.append(pair)
        print(f"{set_name}: {len(candidates)} candidates, {len(pairs)} pairs so far")
        ns.delete()
    OUT.write_text(
        json.dumps(
            {
                "drawn_at_commit": commit,
                "reflector": sorted(
                    {f"{r['reflector']} {r['prompt_version']}" for r in every.values()}
                ),
                "policies": policies,
                "candidates": list(every.values()),
                "pairs": pairs,
            },
            indent=1,
            ensure_ascii=False,
        )
        + "\n"
    )
    print(f"wrote {OUT}: {len(every)} candidates, {len(pairs)} pairs")


if __name__ == "__main__":
    main()
