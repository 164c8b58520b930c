"""One query shape for learning candidates: the API list, the review console queue and
the tests filter candidates the same way."""

import django_filters
from django.db.models import Q

from learning.models import (
    CandidateKind,
    CandidateStatus,
    LearningCandidate,
    Severity,
)


class CandidateFilter(django_filters.FilterSet):
    """Filters over LearningCandidate.

    Pending candidates under their kind's confidence floor (``below_floor``) are left
    out unless ``show_hidden=true``; decided ones show whatever their confidence, so a
    ``status`` filter for decided statuses lists them.
    """

    status = django_filters.MultipleChoiceFilter(
        choices=CandidateStatus.choices, distinct=False
    )
    kind = django_filters.MultipleChoiceFilter(
        choices=CandidateKind.choices, distinct=False
    )
    playbook = django_filters.CharFilter(field_name="playbook__slug")
    agent = django_filters.CharFilter()
    task_type = django_filters.CharFilter()
    user_id = django_filters.CharFilter()
    source = django_filters.CharFilter()
    severity = django_filters.MultipleChoiceFilter(
        field_name="max_severity",
        choices=[(value, value or "none") for value in Severity.values]
        + [("none", "none")],
        method="filter_severity",
        distinct=False,
    )
    min_confidence = django_filters.NumberFilter(
        field_name="confidence", lookup_expr="gte"
    )
    max_confidence = django_filters.NumberFilter(
        field_name="confidence", lookup_expr="lte"
    )
    q = django_filters.CharFilter(method="filter_text")
    run = django_filters.UUIDFilter(field_name="evidence__trajectory_id", distinct=True)
    audited = django_filters.BooleanFilter(
        field_name="audited_at", lookup_expr="isnull", exclude=True
    )
    created_after = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte"
    )
    created_before = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt"
    )
    show_hidden = django_filters.BooleanFilter(method="filter_show_hidden")

    class Meta:
        model = LearningCandidate
        fields = []

    def filter_severity(self, queryset, name, value):
        if not value:
            return queryset
        wanted = {"" if v == "none" else v for v in value}
        return queryset.filter(max_severity__in=wanted)

    def filter_text(self, queryset, name, value):
        value = (value or "").strip()
        if not value:
            return queryset
        return queryset.filter(
            Q(content__icontains=value) | Q(rationale__icontains=value)
        )

    def filter_show_hidden(self, queryset, name, value):
        # Applied in `filter_queryset` so it also acts when the parameter is absent.
        return queryset

    def without_status(self):
        """The same filters over every status, hidden candidates included (what the
        per-status counts start from), from this valid FilterSet's cleaned values:
        no second FilterSet (and form class) to build. `filter_queryset`'s floor rule
        is not applied, as `show_hidden=true` would not apply it."""
        cleaned = dict(self.form.cleaned_data, status=[])
        queryset = self.queryset.all()
        for name, value in cleaned.items():
            queryset = self.filters[name].filter(queryset, value)
        return queryset

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        if not self.form.cleaned_data.get("show_hidden"):
            # Hidden from the queue only: once decided, it shows like any other.
            queryset = queryset.exclude(
                below_floor=True, status=CandidateStatus.PENDING
            )
        return queryset
