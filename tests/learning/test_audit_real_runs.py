"""Audits on real reflector output: tau-bench airline runs posted through the API."""

import gzip
import json
from pathlib import Path

import pytest
from django.conf import settings

from learning.importers import tau_bench_payload
from learning.models import LearningCandidate
from learning.text.analysis import different_names, text_names

pytestmark = pytest.mark.django_db

FIXTURE = Path(settings.BASE_DIR) / "fixtures" / "tau-bench" / "gpt-4o-airline.json.gz"


def test_reflected_candidates_are_audited_without_false_alarms(
    agent_client, django_capture_on_commit_callbacks
):
    """Every candidate the offline reflector makes from 48 real runs (12 tasks x 4
    trials) carries an audit; none gets a hygiene finding; the only conflict warnings
    are between end-of-run facts about one reservation that disagree (two trials left
    it in different states: a reviewer keeps one), never between strategies; and every
    merge joins texts about the same reservations and tools."""
    with gzip.open(FIXTURE, "rt") as fh:
        records = [tau_bench_payload(r) for r in json.load(fh) if r["task_id"] < 12]
    with django_capture_on_commit_callbacks(execute=True):
        response = agent_client.post_json("/api/v1/runs/", {"runs": records})
    assert response.status_code == 201, response.json()
    candidates = list(LearningCandidate.objects.select_related("superseded_by"))
    assert len(candidates) >= 20
    assert all(c.audited_at is not None for c in candidates)
    assert [c.audit["hygiene"] for c in candidates if c.audit["hygiene"]] == []
    by_id = {c.pk: c for c in candidates}
    for c in candidates:
        for finding in c.audit["conflict"]:
            [related] = finding["related"]
            other = by_id[related["id"]]
            assert c.kind == other.kind == "durable_fact", finding
            assert c.entity == other.entity and c.content != other.content, finding
    for c in candidates:
        if c.superseded_by_id:
            assert not different_names(
                text_names(c.content), text_names(c.superseded_by.content)
            )
