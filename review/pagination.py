"""Console pagination: pages that reuse a count the page already has (the status tabs),
open-ended past the tabs' cap."""

from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
from django.db.models import QuerySet
from django.utils.functional import cached_property

MAX_PAGE_SIZE = 200


class _OpenPage(Page):
    def __init__(self, object_list, number, paginator, has_more: bool):
        super().__init__(object_list, number, paginator)
        self.has_more = has_more

    def has_next(self) -> bool:
        return self.has_more

    def end_index(self) -> int:
        return (self.number - 1) * self.paginator.per_page + len(self.object_list)


class QueuePaginator(Paginator):
    """Pages with a count the caller already has (the status tabs count the current
    filter): no extra COUNT query. Over the tabs' cap the count is unknown, so the
    pages are open-ended: one extra row tells whether there is a next page."""

    def __init__(self, object_list, per_page, *, count: int, capped: bool):
        super().__init__(object_list, per_page)
        self._known_count, self.capped, self.cap = count, capped, count

    @cached_property
    def count(self) -> int:
        return self._known_count

    def validate_number(self, number):
        if not self.capped:
            return super().validate_number(number)
        try:
            number = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger("That page number is not an integer")
        if number < 1:
            raise EmptyPage("That page number is less than 1")
        return number

    def page(self, number):
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        if not self.capped:
            top = min(bottom + self.per_page, self.count)
            return self._get_page(
                page_rows(self.object_list, bottom, top), number, self
            )
        rows = page_rows(self.object_list, bottom, bottom + self.per_page + 1)
        return _OpenPage(rows[: self.per_page], number, self, len(rows) > self.per_page)


def page_rows(object_list, bottom: int, top: int) -> list:
    """Rows `bottom`..`top` of an ordered queryset in one statement: the page's ids
    in a subquery, then those rows. The ids come from an index-only scan when an
    index carries the order and the filters (the queue's), so a filtered page reads
    its 50 table rows rather than every row its filters skip."""
    if not isinstance(object_list, QuerySet) or top <= bottom:
        return list(object_list[bottom:top])
    return list(object_list.filter(pk__in=object_list.values("pk")[bottom:top]))


def page_get(request, qs, per_page: int, params=None, **paginator_kwargs):
    params = request.GET if params is None else params
    try:
        per_page = max(1, min(int(params.get("per_page", per_page)), MAX_PAGE_SIZE))
    except (TypeError, ValueError):
        pass
    if paginator_kwargs:
        paginator = QueuePaginator(qs, per_page, **paginator_kwargs)
    else:
        paginator = Paginator(qs, per_page)
    return paginator.get_page(params.get("page"))
