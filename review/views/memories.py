"""Memories (preferences and durable facts): list and filter by user and entity,
edit, retire, history. Reviewers read them; admins of the namespace change them."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from learning.access import role_for
from learning.permissions import console_action_required, user_allows
from playbooks import memories as memory_services
from playbooks.models import Memory, MemoryKind
from playbooks.versions import PlaybookError
from review import selectors
from review.forms import MemoryEditForm
from review.pagination import page_get
from review.views.common import is_partial, reviewer_required

editor_required = console_action_required("memories.edit")


def _memory(request, memory_id: int, action: str = "console.use") -> Memory:
    try:
        memory = selectors.memory_for_review(user=request.user, memory_id=memory_id)
    except Memory.DoesNotExist:
        raise Http404("No such memory in your namespaces.")
    if not user_allows(request.user, memory.namespace, action):
        raise PermissionDenied(
            f"You need the {role_for(action)} role in this namespace."
        )
    return memory


@reviewer_required
@require_http_methods(["GET"])
def memory_list(request):
    filterset, qs = selectors.memory_browser(user=request.user, params=request.GET)
    context = {
        "filter": filterset,
        "page": page_get(request, qs, 50),
        "namespaces": selectors.user_namespace_choices(user=request.user),
        "kinds": MemoryKind.values,
        "params": request.GET,
    }
    if is_partial(request):
        return render(request, "review/memories.html#memory-results", context)
    return render(request, "review/memories.html", context)


def _detail(request, memory, form=None, status=200):
    can_edit = user_allows(request.user, memory.namespace, "memories.edit")
    if form is None and can_edit and memory.active:
        form = MemoryEditForm(
            initial={
                "kind": memory.kind,
                "content": memory.content,
                "importance": memory.importance,
                "user_id": memory.user_id,
                "entity": memory.entity,
            }
        )
    return render(
        request,
        "review/memory.html",
        {
            "m": memory,
            "form": form if can_edit and memory.active else None,
            "can_edit": can_edit,
            "history": selectors.memory_history(memory=memory),
        },
        status=status,
    )


@reviewer_required
@require_http_methods(["GET", "POST"])
def memory_detail(request, memory_id: int):
    if request.method == "GET":
        return _detail(request, _memory(request, memory_id))
    memory = _memory(request, memory_id, "memories.edit")
    form = MemoryEditForm(request.POST)
    if form.is_valid():
        data = dict(form.cleaned_data)
        note = data.pop("note")
        try:
            memory_services.memory_update(
                memory=memory, actor=request.user.get_username(), note=note, **data
            )
        except PlaybookError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            messages.success(request, f"Memory {memory.pk} saved.")
            return redirect("review:memory", memory_id=memory.pk)
    return _detail(request, memory, form=form, status=400)


@editor_required
@require_POST
def memory_retire(request, memory_id: int):
    memory = _memory(request, memory_id, "memories.edit")
    try:
        memory_services.memory_retire(
            memory=memory,
            actor=request.user.get_username(),
            note=(request.POST.get("note") or "")[:4000],
        )
    except PlaybookError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Memory {memory.pk} retired.")
    return redirect("review:memory", memory_id=memory.pk)
