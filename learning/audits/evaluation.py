"""Measure the audits on a labelled set of cases: each case is built in the database
(in a transaction that is rolled back), audited through `candidate_audit`, and the
flags are compared with the label. Recall and precision per audit, and the rate of
false alarms on clean cases."""

import time
from dataclasses import dataclass, field

from django.db import transaction

AUDITS = ("conflict", "hygiene", "duplicate")


class _Rollback(Exception):
    pass


@dataclass
class CaseResult:
    id: str
    domain: str
    expect: str
    flagged: set
    messages: list = field(default_factory=list)

    @property
    def correct(self) -> bool:
        if self.expect == "clean":
            return not self.flagged
        return self.expect in self.flagged


SHAPE_FIELDS = ("polarity", "when", "directive", "why")


def _shape(kind: str, spec: dict) -> dict:
    """The lesson fields of a case item as the product stores them: given (cases
    taken from reflector output carry the reflector's shape) or read from the text
    and rendered, as `candidate_create` and hand-written strategies do."""
    from learning.lessons import lesson_render, shape_or_parse
    from learning.models import SHAPED_KINDS

    text = spec.get("content") or spec.get("text") or ""
    if kind not in SHAPED_KINDS:
        return {"content": text}
    shape, classified = shape_or_parse(
        content=text, kind=kind, **{f: spec.get(f, "") for f in SHAPE_FIELDS}
    )
    rendered = lesson_render(
        polarity=shape.polarity, when=shape.when, directive=shape.directive
    )
    return {
        "content": spec.get("content") if spec.get("directive") else rendered,
        "polarity": shape.polarity,
        "when": shape.when,
        "directive": shape.directive,
        "why": shape.why,
        "shape_classified": classified,
    }


def _existing_item(item: dict, *, namespace, playbook, spec: dict):
    """One curated item or pending candidate of a case; returns a skill it made."""
    from learning.models import MEMORY_KINDS, LearningCandidate
    from playbooks.models import Memory, Skill, Strategy

    if item["type"] == "strategy":
        strategy_type = item.get("strategy_type", "helpful")
        kind = f"strategy_{strategy_type}"
        shape = _shape(kind, item)
        Strategy.objects.create(
            playbook=playbook,
            type=strategy_type,
            description=shape.pop("content"),
            **shape,
        )
    elif item["type"] == "memory":
        Memory.objects.create(
            namespace=namespace,
            scope=item.get("scope", "namespace"),
            user_id=item.get("user_id", ""),
            kind=item.get("kind", "preference"),
            entity=item.get("entity", ""),
            content=item["text"],
        )
    elif item["type"] == "skill":
        return Skill.objects.create(
            namespace=namespace, slug="eval-skill", name="Eval skill", text=item["text"]
        )
    elif item["type"] == "candidate":
        kind = item.get("kind", "strategy_helpful")
        memory = kind in MEMORY_KINDS
        LearningCandidate.objects.create(
            namespace=namespace,
            kind=kind,
            playbook=None if memory else playbook,
            memory_scope=spec.get("memory_scope", "") if memory else "",
            user_id=spec.get("user_id", "") if memory else "",
            entity=item.get("entity", ""),
            **_shape(kind, item),
        )
    return None


def _build_case(index: int, case: dict):
    from learning.models import MEMORY_KINDS, LearningCandidate, Namespace
    from playbooks.models import AgentPolicy, HygienePolicy, Playbook

    namespace = Namespace.objects.create(slug=f"audit-eval-{index}", name=case["id"])
    playbook = Playbook.objects.create(namespace=namespace, slug="eval", name="Eval")
    if case.get("policy"):
        HygienePolicy.objects.create(namespace=namespace, **case["policy"])
    if case.get("agent_policy"):
        AgentPolicy.objects.create(namespace=namespace, text=case["agent_policy"])
    skill = None
    spec = dict(case["candidate"])
    for item in case.get("existing", []):
        skill = (
            _existing_item(item, namespace=namespace, playbook=playbook, spec=spec)
            or skill
        )
    kind = spec.pop("kind")
    wants_skill = spec.pop("skill", False)
    memory = kind in MEMORY_KINDS
    return LearningCandidate.objects.create(
        namespace=namespace,
        kind=kind,
        playbook=None if (memory or wants_skill) else playbook,
        skill=skill if wants_skill else None,
        memory_scope=spec.get("memory_scope", ""),
        user_id=spec.get("user_id", ""),
        entity=spec.get("entity", ""),
        patch=spec.get("patch", ""),
        **_shape(kind, spec),
    )


def audit_eval_run(*, cases: list[dict]) -> dict:
    """Audit every case and compute the figures. Nothing is left in the database."""
    from learning.services.audit import candidate_audit

    results: list[CaseResult] = []
    started = time.perf_counter()
    try:
        with transaction.atomic():
            for index, case in enumerate(cases):
                candidate = _build_case(index, case)
                report = candidate_audit(candidate=candidate)
                flagged = {name for name in AUDITS if report.get(name)}
                messages = [
                    f"{name}: {f['message']}"
                    for name in AUDITS
                    for f in report.get(name, [])
                ]
                results.append(
                    CaseResult(
                        case["id"],
                        case.get("domain", ""),
                        case["expect"],
                        flagged,
                        messages,
                    )
                )
            raise _Rollback
    except _Rollback:
        pass
    elapsed = time.perf_counter() - started
    return audit_eval_figures(results=results, elapsed=elapsed)


def audit_eval_figures(*, results: list[CaseResult], elapsed: float = 0.0) -> dict:
    figures = {}
    for name in AUDITS:
        expected = [r for r in results if r.expect == name]
        flagged = [r for r in results if name in r.flagged]
        true_pos = [r for r in expected if name in r.flagged]
        figures[name] = {
            "cases": len(expected),
            "recall": len(true_pos) / len(expected) if expected else 1.0,
            "precision": len(true_pos) / len(flagged) if flagged else 1.0,
            "flagged": len(flagged),
        }
    clean = [r for r in results if r.expect == "clean"]
    alarms = [r for r in clean if r.flagged]
    return {
        "audits": figures,
        "clean": {
            "cases": len(clean),
            "false_alarms": len(alarms),
            "false_alarm_rate": len(alarms) / len(clean) if clean else 0.0,
        },
        "total": len(results),
        "domains": sorted({r.domain for r in results}),
        "misses": [
            {
                "id": r.id,
                "expect": r.expect,
                "flagged": sorted(r.flagged),
                "messages": r.messages,
            }
            for r in results
            if not r.correct
        ],
        "seconds": round(elapsed, 2),
    }


def audit_eval_table(figures: dict) -> str:
    """The figures as a Markdown table (printed by `manage.py audit_eval`)."""
    lines = [
        "| audit | cases | recall | precision | flagged |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name in AUDITS:
        f = figures["audits"][name]
        lines.append(
            f"| {name} | {f['cases']} | {f['recall']:.2f} | {f['precision']:.2f} | "
            f"{f['flagged']} |"
        )
    clean = figures["clean"]
    lines.append(
        f"| clean (false alarms) | {clean['cases']} | – | – | {clean['false_alarms']} "
        f"({clean['false_alarm_rate']:.0%}) |"
    )
    return "\n".join(lines)
