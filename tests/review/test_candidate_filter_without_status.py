"""`CandidateFilter.without_status` (the per-status counts' starting set) selects what a
second FilterSet without the status, hidden candidates shown, selects."""

import pytest
from django.http import QueryDict

from learning.candidate_filters import CandidateFilter
from learning.models import LearningCandidate
from tests.factories import CandidateFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "query",
    [
        "status=pending",
        "status=denied&kind=procedure",
        "kind=procedure&severity=warn&min_confidence=0.5",
        "severity=none&status=pending&status=applied",
        "q=fare&show_hidden=true",
        "agent=bot-b&max_confidence=0.6",
        "audited=false",
    ],
)
def test_without_status_selects_what_a_second_filterset_would(acme, query):
    for n in range(12):
        CandidateFactory(
            namespace=acme,
            kind=["procedure", "preference", "durable_fact"][n % 3],
            status=["pending", "denied", "applied", "pending"][n % 4],
            max_severity=["", "warn", "info"][n % 3],
            confidence=0.3 + n * 0.05,
            below_floor=n % 5 == 0,
            agent="bot-b" if n % 2 else "bot-a",
            content=f"Check the fare rules, case {n}" if n % 3 else f"Ask first {n}",
        )
    base = LearningCandidate.objects.filter(namespace=acme)
    params = QueryDict(query)
    filterset = CandidateFilter(params, queryset=base)
    assert filterset.is_valid()
    without = params.copy()
    without.setlist("status", [])
    without["show_hidden"] = "true"
    second = CandidateFilter(without, queryset=base)
    assert second.is_valid()
    expected = set(second.qs.values_list("pk", flat=True))
    assert set(filterset.without_status().values_list("pk", flat=True)) == expected
    # It is a wider set than the filter itself when a status or the floor narrows it.
    assert set(filterset.qs.values_list("pk", flat=True)) <= expected
