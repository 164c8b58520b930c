"""What every console view needs: the reviewer as an actor, a candidate the user may
review, a safe "next" URL, whether the request wants a fragment."""

from django.db.models import Prefetch
from django.http import Http404
from django.utils.http import url_has_allowed_host_and_scheme

from learning.models import LearningCandidate, Severity
from learning.permissions import console_action_required, user_allows
from review import selectors, services
from review.models import CannedReason, ReviewTag

reviewer_required = console_action_required("candidates.review")
CONFLICT_STATUS = {
    services.AlreadyDecided: 409,
    services.NeedsOverride: 403,
    services.NoteRequired: 400,
    services.FindingNotFound: 404,
}


def actor_of(request, candidate) -> services.Actor:
    """The reviewer as an actor. `is_admin` only ever allows overriding a `block`
    finding, so the role is looked up only for such a candidate (one query fewer
    per decision on the rest)."""
    is_admin = candidate.max_severity == Severity.BLOCK and user_allows(
        request.user, candidate.namespace, "candidates.override"
    )
    return services.Actor(label=request.user.get_username(), is_admin=is_admin)


def candidate_get(request, pk: int, *, light: bool = False) -> LearningCandidate:
    """A candidate the user may review: with its evidence (the candidate page), or
    `light` — only what an action needs (no runs, steps or feedback)."""
    try:
        if light:
            return selectors.candidate_row(user=request.user, candidate_id=pk)
        return selectors.candidate_for_review(user=request.user, candidate_id=pk)
    except LearningCandidate.DoesNotExist:
        raise Http404("No such candidate in your namespaces.")


def guidance_for(namespaces) -> dict:
    """The canned reasons and tags of these namespaces, for the deny dialog (keys
    1–9 pick a reason): {namespace id: {"reasons": [...], "tags": [...]}}. Two
    queries."""
    ids = [ns.pk for ns in namespaces]
    data = {str(pk): {"reasons": [], "tags": []} for pk in ids}
    reasons = (
        CannedReason.objects.filter(namespace_id__in=ids, active=True)
        .prefetch_related(Prefetch("tags", queryset=ReviewTag.objects.only("slug")))
        .order_by("position", "id")
    )
    for reason in reasons:
        data[str(reason.namespace_id)]["reasons"].append(
            {
                "id": reason.pk,
                "text": reason.text,
                "tags": [t.slug for t in reason.tags.all()],
            }
        )
    for tag in ReviewTag.objects.filter(namespace_id__in=ids):
        data[str(tag.namespace_id)]["tags"].append(
            {"slug": tag.slug, "label": tag.label or tag.slug}
        )
    return data


def safe_next(request, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


def is_partial(request) -> bool:
    return bool(request.htmx) and not request.htmx.history_restore_request
