"""Real tau-bench airline runs (fixtures/tau-bench) posted through the API become
specific, provenanced candidates for at least 80% of the failures."""

import gzip
import json
import re
from pathlib import Path

import pytest
from django.conf import settings

from learning.importers import tau_bench_payload
from learning.models import CandidateEvidence, LearningCandidate, Reflection, Trajectory

pytestmark = pytest.mark.django_db

FIXTURE = Path(settings.BASE_DIR) / "fixtures" / "tau-bench" / "gpt-4o-airline.json.gz"
TOOLS = {
    "get_user_details",
    "get_reservation_details",
    "search_direct_flight",
    "search_onestop_flight",
    "update_reservation_flights",
    "update_reservation_baggages",
    "update_reservation_passengers",
    "cancel_reservation",
    "book_reservation",
    "send_certificate",
    "transfer_to_human_agents",
    "calculate",
    "list_all_airports",
}
GENERIC = re.compile(r"\b(be careful|double-check everything|pay attention)\b", re.I)


@pytest.fixture(scope="module")
def sample():
    """The first 8 tasks x 4 trials: successes and failures of the same tasks."""
    with gzip.open(FIXTURE, "rt") as fh:
        records = json.load(fh)
    return [tau_bench_payload(r) for r in records if r["task_id"] < 8]


def test_failed_tau_bench_runs_yield_specific_candidates_with_provenance(
    agent_client,
    reviewer_client,
    sample,
    django_capture_on_commit_callbacks,
    monkeypatch,
):
    """Posting a sample of real runs (successes and failures of the same tasks) reflects
    every failure; >= 80% of them are evidence of a candidate, strategy candidates name
    the tools involved, and evidence points at steps that exist. (Audits are tested on
    their own; they are left out here to keep this test fast.)"""
    import learning.services.candidates as audit

    monkeypatch.setattr(audit, "candidates_audit_enqueue", lambda **kw: None)
    monkeypatch.setattr(audit, "candidates_audit_after_commit", lambda **kw: None)
    with django_capture_on_commit_callbacks(execute=True):
        response = agent_client.post_json("/api/v1/runs/", {"runs": sample})
    assert response.status_code == 201, response.json()
    failed = set(
        Trajectory.objects.filter(status="failure").values_list("id", flat=True)
    )
    assert len(failed) >= 10
    assert (
        not Trajectory.objects.filter(id__in=failed)
        .exclude(reflection_status="reflected")
        .exists()
    )

    body = reviewer_client.get("/api/v1/candidates/?page_size=500").json()
    covered = {run for c in body["results"] for run in c["evidence_runs"]}
    share = len({str(r) for r in failed} & covered) / len(failed)
    assert share >= 0.8, f"only {share:.0%} of failed runs gave candidates"

    strategies = LearningCandidate.objects.filter(kind__startswith="strategy")
    assert strategies.count() >= 10
    for candidate in strategies:
        # A tool, or a field the conversation turned on (in backticks), never a
        # sentence that would read the same for any run.
        named = {t for t in TOOLS if t in candidate.content}
        assert named or "`" in candidate.content, (
            f"nothing named in: {candidate.content}"
        )
        assert not GENERIC.search(candidate.content)
        assert candidate.playbook.slug == "airline"
    # Provenance: the exact steps, which exist in the run they point at.
    evidence = CandidateEvidence.objects.filter(
        candidate__kind__startswith="strategy", trajectory_id__in=failed
    )
    checked = 0
    for row in evidence.exclude(step_indexes=[]).select_related("trajectory")[:50]:
        indexes = set(row.trajectory.steps.values_list("index", flat=True))
        assert set(row.step_indexes) <= indexes
        checked += 1
    assert checked >= 10
    # Contrast across trials of one task is among the lessons (its why says so; the
    # text itself stays general). Read from the reflections: a candidate keeps the
    # rationale of the first run that made it, and which run is reflected first
    # follows the runs' random ids.
    lessons = [
        item
        for reflection in Reflection.objects.all()
        for item in (*reflection.helpful_strategies, *reflection.harmful_patterns)
    ]
    assert any(
        "successful runs of the same task" in (item.get("why") or "")
        for item in lessons
    ), [item.get("why") for item in lessons]


RULES = Path(settings.BASE_DIR) / "fixtures" / "tau-bench" / "airline-rules.json"


def test_the_demo_namespace_rules_turn_known_errors_into_domain_advice(
    agent_client, sample, django_capture_on_commit_callbacks, monkeypatch
):
    """The airline knowledge is data the demo namespace owns: with the rules loaded, a
    rejected payment becomes the rule's advice (through the same engine), citing the
    failing call; without them the engine still names the tool and the field."""
    import learning.services.audit as audit

    monkeypatch.setattr(audit, "candidates_audit_enqueue", lambda **kw: None)
    monkeypatch.setattr(audit, "candidates_audit_after_commit", lambda **kw: None)
    namespace = agent_client.namespace
    namespace.reflection_rules = json.loads(RULES.read_text())
    namespace.save()
    with django_capture_on_commit_callbacks(execute=True):
        response = agent_client.post_json("/api/v1/runs/", {"runs": sample})
    assert response.status_code == 201
    advice = LearningCandidate.objects.get(
        content__startswith="When paying for a booking or a change, compute the total"
    )
    assert "Namespace rule airline-payment-total" in advice.rationale
    cited = CandidateEvidence.objects.filter(candidate=advice).select_related(
        "trajectory"
    )
    assert cited.exists()
    for row in cited:
        steps = {s.index: s for s in row.trajectory.steps.all()}
        assert any("does not add up" in steps[i].description for i in row.step_indexes)
