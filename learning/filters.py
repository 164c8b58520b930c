"""One query shape per list: the API, the console and the tests filter runs the same way."""

import django_filters

from learning.models import RunStatus, Trajectory


class RunFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=RunStatus.choices)
    task_type = django_filters.CharFilter()
    agent = django_filters.CharFilter()
    user_id = django_filters.CharFilter()
    session_id = django_filters.CharFilter()
    external_id = django_filters.CharFilter()
    min_score = django_filters.NumberFilter(
        field_name="effective_score", lookup_expr="gte"
    )
    max_score = django_filters.NumberFilter(
        field_name="effective_score", lookup_expr="lte"
    )
    created_after = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte"
    )
    created_before = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt"
    )
    needs_relearning = django_filters.BooleanFilter()
    reflection_status = django_filters.CharFilter()
    q = django_filters.CharFilter(
        field_name="task_description", lookup_expr="icontains"
    )

    class Meta:
        model = Trajectory
        fields = []
