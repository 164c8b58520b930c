"""One query shape for memories: the console's memories page filters them here."""

import django_filters
from django.db.models import Q

from playbooks.models import Memory, MemoryKind


class MemoryFilter(django_filters.FilterSet):
    """Memories by user, entity (a substring), kind, text, and whether they are
    active (`state`: active — the default —, retired or all)."""

    user_id = django_filters.CharFilter()
    entity = django_filters.CharFilter(lookup_expr="icontains")
    kind = django_filters.MultipleChoiceFilter(choices=MemoryKind.choices)
    q = django_filters.CharFilter(method="filter_text")
    state = django_filters.ChoiceFilter(
        choices=[("active", "active"), ("retired", "retired"), ("all", "all")],
        method="filter_state",
        empty_label=None,
    )

    class Meta:
        model = Memory
        fields = []

    def filter_text(self, queryset, name, value):
        value = (value or "").strip()
        if not value:
            return queryset
        return queryset.filter(Q(content__icontains=value) | Q(entity__icontains=value))

    def filter_state(self, queryset, name, value):
        return queryset  # applied in filter_queryset, so it acts when absent too

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        state = self.form.cleaned_data.get("state") or "active"
        if state == "active":
            return queryset.filter(active=True)
        if state == "retired":
            return queryset.filter(active=False)
        return queryset
