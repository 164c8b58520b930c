"""A namespace's guidance for its reviewers, edited by its admins: the guidelines
shown beside every candidate, canned denial reasons and decision tags."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from learning.access import role_for
from learning.models import Namespace
from learning.permissions import console_action_required, user_allows
from review import selectors, services
from review.forms import GuidelineForm, ReasonForm, TagForm
from review.models import CannedReason, Guideline, ReviewTag

reasons_required = console_action_required("reasons.edit")
guidelines_required = console_action_required("guidelines.edit")


def _namespace(request, ns: str, action: str) -> Namespace:
    namespace = Namespace.objects.filter(slug=ns).first()
    if namespace is None:
        raise Http404("No such namespace.")
    if not user_allows(request.user, namespace, action):
        raise PermissionDenied(
            f"You need the {role_for(action)} role in this namespace."
        )
    return namespace


def _page(request, namespace, status=200, **forms):
    guideline = Guideline.objects.filter(namespace=namespace).first()
    context = {
        "namespace": namespace,
        "guideline": guideline,
        "guideline_form": forms.get("guideline_form")
        or GuidelineForm(initial={"text": guideline.text if guideline else ""}),
        "reasons": CannedReason.objects.filter(namespace=namespace).prefetch_related(
            "tags"
        ),
        "tags": ReviewTag.objects.filter(namespace=namespace),
        "reason_form": forms.get("reason_form") or ReasonForm(),
        "tag_form": forms.get("tag_form") or TagForm(),
        "labels": selectors.decision_labels_counts(user=request.user),
    }
    return render(request, "review/guidance.html", context, status=status)


@reasons_required
@require_GET
def guidance(request, ns):
    return _page(request, _namespace(request, ns, "reasons.edit"))


def _done(request, ns, text):
    messages.success(request, text)
    return redirect("review:guidance", ns=ns)


@guidelines_required
@require_POST
def guideline_edit(request, ns):
    namespace = _namespace(request, ns, "guidelines.edit")
    form = GuidelineForm(request.POST)
    if form.is_valid():
        try:
            services.guideline_update(
                namespace=namespace,
                actor=request.user.get_username(),
                text=form.cleaned_data["text"],
            )
        except services.ReviewError as exc:
            form.add_error("text", str(exc))
        else:
            return _done(request, ns, "Guidelines saved.")
    return _page(request, namespace, status=400, guideline_form=form)


@reasons_required
@require_POST
def reason_edit(request, ns):
    namespace = _namespace(request, ns, "reasons.edit")
    form = ReasonForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            services.canned_reason_save(
                namespace=namespace,
                actor=request.user.get_username(),
                text=data["text"],
                tags=data["tags"],
                reason_id=data["id"],
                active=data["active"] if data["id"] else True,
            )
        except services.ReviewError as exc:
            form.add_error(None, str(exc))
        else:
            return _done(request, ns, "Canned reason saved.")
    return _page(request, namespace, status=400, reason_form=form)


@reasons_required
@require_POST
def tag_edit(request, ns):
    namespace = _namespace(request, ns, "reasons.edit")
    form = TagForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        actor = request.user.get_username()
        try:
            if data["delete"]:
                services.review_tag_delete(
                    namespace=namespace, actor=actor, slug=data["slug"]
                )
            else:
                services.review_tag_save(
                    namespace=namespace,
                    actor=actor,
                    slug=data["slug"],
                    label=data["label"],
                )
        except services.ReviewError as exc:
            form.add_error(None, str(exc))
        else:
            return _done(request, ns, "Tags saved.")
    return _page(request, namespace, status=400, tag_form=form)
