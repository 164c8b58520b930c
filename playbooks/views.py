"""Admin pages for playbooks, skills and the hygiene policy: thin views over
playbooks.services. Every page works as plain forms; htmx swaps the changed fragment.
Admin Membership is checked here, per namespace."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from learning.access import role_for
from learning.models import Namespace
from learning.permissions import console_action_required, user_allows, user_namespaces
from learning.services.audit import curated_findings_summary, curated_text_audit
from playbooks import (
    apply,
    quality,
    recall,
    rollout,
    selectors,
    services,
    skills,
    versions,
)
from playbooks import policy as policies
from playbooks.forms import (
    PlaybookCreateForm,
    PlaybookSettingsForm,
    PolicyForm,
    RecallPreviewForm,
    RolloutPolicyForm,
    SkillCreateForm,
    SkillEditForm,
    StrategyForm,
)
from playbooks.models import Playbook, Skill, Strategy
from playbooks.recall import DEFAULT_BUDGET

admin_required = console_action_required("playbooks.edit")
# Reviewers may read playbooks and their history; every change needs an admin.
reader_required = console_action_required("console.use")
reverter_required = console_action_required("candidates.revert")
skills_required = console_action_required("skills.edit")
policy_required = console_action_required("policy.edit")
rollout_required = console_action_required("rollout.manage")


def _namespace(request, ns: str, action: str = "playbooks.edit") -> Namespace:
    namespace = Namespace.objects.filter(slug=ns).first()
    if namespace is None:
        raise Http404("No such namespace.")
    if not user_allows(request.user, namespace, action):
        raise PermissionDenied(
            f"You need the {role_for(action)} role in this namespace."
        )
    return namespace


def _playbook(request, ns: str, slug: str, action: str = "playbooks.edit") -> Playbook:
    namespace = _namespace(request, ns, action)
    try:
        return selectors.playbook_get(namespace=namespace, slug=slug)
    except Playbook.DoesNotExist:
        raise Http404("No such playbook.")


def _skill(request, ns: str, slug: str) -> Skill:
    namespace = _namespace(request, ns, "skills.edit")
    try:
        return selectors.skill_get(namespace=namespace, slug=slug)
    except Skill.DoesNotExist:
        raise Http404("No such skill.")


def _actor(request) -> str:
    return request.user.get_username()


def _form_error(form, exc: versions.PlaybookError):
    form.add_error(exc.field if exc.field in form.fields else None, str(exc))


def _is_htmx(request) -> bool:
    return bool(request.htmx) and not request.htmx.history_restore_request


# --- playbooks -----------------------------------------------------------------------


@reader_required
@require_http_methods(["GET", "POST"])
def playbook_index(request):
    """The playbooks of the user's namespaces, and (for admins) a create form."""
    namespaces = user_namespaces(request.user)
    admin_namespaces = list(user_namespaces(request.user, action="playbooks.edit"))
    form = PlaybookCreateForm(request.POST or None, namespaces=admin_namespaces)
    status = 200
    if request.method == "POST":
        if not admin_namespaces:
            raise PermissionDenied("You need the admin role in a namespace.")
        if form.is_valid():
            namespace = _namespace(request, form.cleaned_data.pop("namespace"))
            try:
                playbook = services.playbook_create_checked(
                    namespace=namespace, actor=_actor(request), **form.cleaned_data
                )
            except versions.PlaybookError as exc:
                _form_error(form, exc)
            else:
                messages.success(
                    request, f"Created playbook {playbook.slug} (version 1)."
                )
                return redirect(
                    "playbooks:detail", ns=namespace.slug, slug=playbook.slug
                )
        status = 400
    playbooks = list(selectors.playbook_list(namespaces=namespaces))
    for playbook in playbooks:
        playbook.flagged_versions = selectors.playbook_flagged_numbers(playbook)
    return render(
        request,
        "playbooks/index.html",
        {
            "playbooks": playbooks,
            "form": form,
            "admin_namespaces": admin_namespaces,
        },
        status=status,
    )


def _detail_context(
    playbook: Playbook,
    *,
    can_edit: bool = True,
    can_manage: bool | None = None,
    **extra,
) -> dict:
    strategies = list(selectors.strategy_list(playbook=playbook))
    return {
        "playbook": playbook,
        "can_edit": can_edit,
        "strategies": strategies,
        **_rollout_context(playbook, can_edit if can_manage is None else can_manage),
        "settings_form": PlaybookSettingsForm(
            initial={
                "name": playbook.name,
                "description": playbook.description,
                "scope": playbook.scope,
                "mode": playbook.mode,
                "auto_apply_threshold": playbook.auto_apply_threshold,
                "task_types": ", ".join(playbook.task_types or []),
            }
        ),
        "add_form": StrategyForm(),
        **extra,
    }


def _rollout_context(playbook: Playbook, can_manage: bool, **extra) -> dict:
    status = rollout.rollout_status(playbook=playbook)
    policy = status["policy"]
    return {
        "rollout": status,
        "rollout_view": _rollout_display(status),
        "can_manage": can_manage,
        "policy_form": RolloutPolicyForm(initial=policy)
        if policy
        else RolloutPolicyForm(),
        **extra,
    }


def _points(value) -> str:
    return "–" if value is None else f"{value * 100:+.1f}"


def _percent(value) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"


_OUTCOMES = {
    "waiting": "waiting for runs",
    "continue": "undecided, still running",
    "promote": "promote the canary",
    "roll_back": "roll the canary back",
}


def _rollout_display(status: dict) -> dict:
    """The rollout's figures as the console shows them (percent, points)."""
    decision = status["decision"] or {}
    arms = decision.get("arms") or {}
    rows = []
    for cohort in ("production", "canary"):
        arm = arms.get(cohort)
        if arm is None:
            continue
        low, high = arm["success_ci"]
        rows.append(
            {
                "cohort": cohort,
                "version": arm["version"],
                "runs": arm["runs"],
                "successes": arm["successes"],
                "rate": _percent(arm["success_rate"]),
                "ci": f"{_percent(low)}–{_percent(high)}" if arm["runs"] else "–",
                "score": "–"
                if arm["mean_score"] is None
                else f"{arm['mean_score']:.2f}",
            }
        )
    interval = decision.get("interval") or [None, None]
    score = decision.get("score") or {}
    score_interval = score.get("interval") or [None, None]
    stage = decision.get("stage")
    levels = {"horizon": "96%", "sequential": "99%", "waiting": "95%"}
    return {
        "rows": rows,
        "estimate": _points(decision.get("estimate")),
        "interval": f"{_points(interval[0])} to {_points(interval[1])}",
        "level": levels.get(stage, ""),
        "stage": stage,
        "basis": f"first {decision.get('min_runs_per_arm')} runs of each cohort"
        if stage == "horizon"
        else "all runs",
        "outcome": _OUTCOMES.get(decision.get("outcome"), ""),
        "reason": decision.get("reason", ""),
        "score": _points(score.get("estimate")),
        "score_interval": f"{_points(score_interval[0])} to "
        f"{_points(score_interval[1])}",
        "share": _percent(status["share"]),
    }


def _strategies_response(request, playbook: Playbook, *, status: int = 200, **extra):
    """After a strategy change: the #strategies fragment for htmx, else the page."""
    playbook.refresh_from_db()
    if _is_htmx(request):
        return render(
            request,
            "playbooks/detail.html#strategies",
            _detail_context(playbook, **extra),
            status=status,
        )
    if status >= 400:
        return render(
            request,
            "playbooks/detail.html",
            _detail_context(playbook, **extra),
            status=status,
        )
    return redirect("playbooks:detail", ns=playbook.namespace.slug, slug=playbook.slug)


@reader_required
@require_GET
def playbook_detail(request, ns, slug):
    playbook = _playbook(request, ns, slug, "console.use")
    can_edit = user_allows(request.user, playbook.namespace, "playbooks.edit")
    can_manage = user_allows(request.user, playbook.namespace, "rollout.manage")
    return render(
        request,
        "playbooks/detail.html",
        _detail_context(playbook, can_edit=can_edit, can_manage=can_manage),
    )


@admin_required
@require_POST
def playbook_settings(request, ns, slug):
    playbook = _playbook(request, ns, slug)
    form = PlaybookSettingsForm(request.POST)
    if form.is_valid():
        try:
            services.playbook_update(
                playbook=playbook, actor=_actor(request), **form.cleaned_data
            )
        except versions.PlaybookError as exc:
            _form_error(form, exc)
        else:
            messages.success(request, "Settings saved.")
            return redirect("playbooks:detail", ns=ns, slug=slug)
    context = _detail_context(playbook)
    context["settings_form"] = form
    return render(request, "playbooks/detail.html", context, status=400)


def _audit_first(form, *, namespace, **target) -> tuple[dict, list | None]:
    """The form's data for the service, and the audit findings of the text to save:
    None when they must be shown first (warn or block findings, and the admin did not
    tick "Save anyway"), else the list to record with the version."""
    data = dict(form.cleaned_data)
    save_anyway = data.pop("save_anyway", False)
    text = data.get("text") if "text" in data else data.get("description", "")
    report = curated_text_audit(namespace=namespace, text=text or "", **target)
    summary = curated_findings_summary(report)
    form.audit_report = report
    if summary and not save_anyway:
        return data, None
    return data, summary


@admin_required
@require_POST
def strategy_add(request, ns, slug):
    playbook = _playbook(request, ns, slug)
    form = StrategyForm(request.POST)
    if form.is_valid():
        data, findings = _audit_first(
            form,
            namespace=playbook.namespace,
            playbook=playbook,
            type=form.cleaned_data["type"],
        )
        if findings is None:
            return _strategies_response(
                request, playbook, status=400, add_form=form, audit=form.audit_report
            )
        try:
            _, version = services.strategy_add(
                playbook=playbook,
                actor=_actor(request),
                audit_findings=findings,
                **data,
            )
        except versions.PlaybookError as exc:
            _form_error(form, exc)
        else:
            messages.success(request, f"Added; now version {version.number}.")
            return _strategies_response(request, playbook)
    return _strategies_response(request, playbook, status=400, add_form=form)


@admin_required
@require_http_methods(["GET", "POST"])
def strategy_edit(request, ns, slug, strategy_id):
    playbook = _playbook(request, ns, slug)
    strategy = Strategy.objects.filter(
        playbook=playbook, pk=strategy_id, active=True
    ).first()
    if strategy is None:
        raise Http404("No such active strategy.")
    if request.method == "GET":
        form = StrategyForm(
            initial={
                "type": strategy.type,
                "description": strategy.description,
                "context": strategy.context,
                "confidence": strategy.confidence,
            }
        )
        return render(
            request,
            "playbooks/strategy_edit.html",
            {"playbook": playbook, "strategy": strategy, "form": form},
        )
    form = StrategyForm(request.POST)
    if form.is_valid():
        data, findings = _audit_first(
            form,
            namespace=playbook.namespace,
            playbook=playbook,
            strategy_id=strategy.pk,
            type=form.cleaned_data["type"],
        )
        try:
            if findings is not None:
                _, version = services.strategy_edit(
                    playbook=playbook,
                    strategy_id=strategy.pk,
                    actor=_actor(request),
                    audit_findings=findings,
                    **data,
                )
        except versions.PlaybookError as exc:
            _form_error(form, exc)
        else:
            if findings is not None:
                messages.success(request, f"Saved; now version {version.number}.")
                return _strategies_response(request, playbook)
    return render(
        request,
        "playbooks/strategy_edit.html",
        {
            "playbook": playbook,
            "strategy": strategy,
            "form": form,
            "audit": getattr(form, "audit_report", None),
        },
        status=400,
    )


@admin_required
@require_POST
def strategy_retire(request, ns, slug, strategy_id):
    playbook = _playbook(request, ns, slug)
    try:
        version = services.strategy_retire(
            playbook=playbook, strategy_id=strategy_id, actor=_actor(request)
        )
    except versions.PlaybookError as exc:
        messages.error(request, str(exc))
        return _strategies_response(request, playbook, status=400)
    messages.success(request, f"Retired; now version {version.number}.")
    return _strategies_response(request, playbook)


@admin_required
@require_POST
def strategy_move(request, ns, slug, strategy_id):
    playbook = _playbook(request, ns, slug)
    active = list(
        Strategy.objects.filter(playbook=playbook, active=True)
        .order_by("position", "id")
        .values_list("pk", flat=True)
    )
    if strategy_id not in active:
        raise Http404("No such active strategy.")
    step = -1 if request.POST.get("direction") == "up" else 1
    target = active.index(strategy_id) + step
    if 0 <= target < len(active):
        services.strategy_move(
            playbook=playbook,
            strategy_id=strategy_id,
            to_index=target,
            actor=_actor(request),
        )
    return _strategies_response(request, playbook)


@reader_required
@require_GET
def playbook_history(request, ns, slug):
    """Every version with its diff, when it served as production and why it left, its
    rollouts as a canary, and (admins) a rollback button."""
    playbook = _playbook(request, ns, slug, "console.use")
    versions = list(selectors.version_list(playbook=playbook))
    trials = selectors.rollouts_by_canary(playbook=playbook)
    for version in versions:
        version.trials = trials.get(version.number, [])
    return render(
        request,
        "playbooks/history.html",
        {
            "playbook": playbook,
            "versions": versions,
            "can_edit": user_allows(request.user, playbook.namespace, "playbooks.edit"),
        },
    )


@admin_required
@require_POST
def playbook_rollback(request, ns, slug, number):
    playbook = _playbook(request, ns, slug)
    try:
        version = versions.playbook_rollback(
            playbook=playbook,
            number=number,
            actor=_actor(request),
            note=request.POST.get("note", "")[:2000],
        )
    except versions.PlaybookError as exc:
        raise Http404(str(exc))
    messages.success(
        request, f"Rolled back to version {number}: now version {version.number}."
    )
    return redirect("playbooks:history", ns=ns, slug=slug)


@admin_required
@require_POST
def playbook_quality(request, ns, slug):
    """The verdict on the running rollout now, as the scheduled gate would."""
    playbook = _playbook(request, ns, slug)
    verdict = rollout.rollout_gate_evaluate(playbook=playbook, actor=_actor(request))
    if verdict is None:
        messages.info(request, "Quality gate: no rollout is running.")
    else:
        messages.info(request, f"Quality gate: {verdict['reason']}.")
    nxt = request.POST.get("next") or ""
    if nxt.startswith("/") and not nxt.startswith("//"):
        return redirect(nxt)
    return redirect("playbooks:detail", ns=ns, slug=slug)


def _rollout_response(request, playbook: Playbook, *, status: int = 200, **extra):
    """After a rollout action: the #rollout fragment for htmx, else the page."""
    playbook.refresh_from_db()
    if _is_htmx(request):
        # the panel, and the strategies out of band: promote/abort change their label
        # (abort their content too)
        context = _detail_context(playbook, can_manage=True, **extra)
        html = render_to_string(
            "playbooks/detail.html#rollout", context, request
        ) + render_to_string(
            "playbooks/detail.html#strategies", {**context, "oob": True}, request
        )
        return HttpResponse(html, status=status)
    if status >= 400:
        return render(
            request,
            "playbooks/detail.html",
            _detail_context(playbook, **extra),
            status=status,
        )
    return redirect("playbooks:detail", ns=playbook.namespace.slug, slug=playbook.slug)


_ROLLOUT_ACTIONS = {
    "promote": (rollout.rollout_promote, "Promote version {canary} to production?"),
    "abort": (
        rollout.rollout_abort,
        "Abort the rollout and drop version {canary}? Production (version "
        "{production}) stays.",
    ),
}


@rollout_required
@require_POST
def rollout_action(request, ns, slug, action):
    """Promote or abort the running canary. A plain form first shows a confirmation
    page (without JavaScript there is no dialog); htmx asks with hx-confirm and sends
    confirm=yes."""
    playbook = _playbook(request, ns, slug, "rollout.manage")
    act, question = _ROLLOUT_ACTIONS[action]
    if request.POST.get("confirm") != "yes":
        return render(
            request,
            "playbooks/rollout_confirm.html",
            {
                "playbook": playbook,
                "action": action,
                "question": question.format(
                    canary=playbook.canary_version,
                    production=playbook.production_version,
                ),
            },
        )
    try:
        done = act(
            playbook=playbook,
            actor=_actor(request),
            note=request.POST.get("note", "")[:2000],
        )
    except versions.PlaybookError as exc:
        messages.error(request, str(exc))
        return _rollout_response(request, playbook, status=409)
    messages.success(request, f"Version {done.canary}: {done.reason}.")
    return _rollout_response(request, playbook)


@rollout_required
@require_POST
def rollout_policy(request, ns, slug):
    """Set the rollout policy, or remove it (`remove` in the form)."""
    playbook = _playbook(request, ns, slug, "rollout.manage")
    form = RolloutPolicyForm(request.POST)
    try:
        if "remove" in request.POST:
            rollout.rollout_policy_remove(playbook=playbook, actor=_actor(request))
            messages.success(request, "Rollout policy removed.")
            return _rollout_response(request, playbook)
        if form.is_valid():
            rollout.rollout_policy_set(
                playbook=playbook, actor=_actor(request), **form.cleaned_data
            )
            messages.success(request, "Rollout policy saved.")
            return _rollout_response(request, playbook)
    except versions.PlaybookError as exc:
        if exc.field in form.fields:
            form.add_error(exc.field, str(exc))
        else:
            messages.error(request, str(exc))
    return _rollout_response(request, playbook, status=400, policy_form=form)


@reader_required
@require_GET
def strategy_stats(request, ns, slug, strategy_id):
    playbook = _playbook(request, ns, slug, "console.use")
    strategy = (
        Strategy.objects.filter(playbook=playbook, pk=strategy_id)
        .select_related("playbook")
        .first()
    )
    if strategy is None:
        raise Http404("No such strategy.")
    return render(
        request,
        "playbooks/strategy_stats.html",
        {
            "playbook": playbook,
            "strategy": strategy,
            "stats": quality.strategy_outcomes(strategy=strategy),
        },
    )


@reverter_required
@require_POST
def candidate_revert(request, ns, candidate_id):
    """Undo an applied (e.g. auto-applied) candidate with a new version."""
    from learning.models import LearningCandidate

    namespace = _namespace(request, ns, "candidates.revert")
    candidate = LearningCandidate.objects.filter(
        namespace=namespace, pk=candidate_id
    ).first()
    if candidate is None:
        raise Http404("No such candidate.")
    try:
        result = apply.candidate_revert(
            candidate=candidate,
            actor=_actor(request),
            note=request.POST.get("note", "")[:2000],
        )
    except apply.ApplyFailed as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request, f"Reverted candidate {candidate.pk} ({result.get('target')})."
        )
    nxt = request.POST.get("next") or ""
    if nxt.startswith("/") and not nxt.startswith("//"):
        return redirect(nxt)
    return redirect("playbooks:index")


# --- skills and policy -------------------------------------------------------------


@skills_required
@require_http_methods(["GET", "POST"])
def skill_index(request, ns):
    namespace = _namespace(request, ns, "skills.edit")
    form = SkillCreateForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                skill = skills.skill_create(
                    namespace=namespace, actor=_actor(request), **form.cleaned_data
                )
            except versions.PlaybookError as exc:
                _form_error(form, exc)
            else:
                messages.success(request, f"Created skill {skill.slug}.")
                return redirect("playbooks:skill", ns=ns, slug=skill.slug)
        status = 400
    return render(
        request,
        "playbooks/skills.html",
        {
            "namespace": namespace,
            "skills": selectors.skill_list(namespace=namespace),
            "form": form,
        },
        status=status,
    )


@skills_required
@require_http_methods(["GET", "POST"])
def skill_detail(request, ns, slug):
    skill = _skill(request, ns, slug)
    form = SkillEditForm(request.POST or None, initial={"text": skill.text})
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data, findings = _audit_first(form, namespace=skill.namespace, skill=skill)
            try:
                if findings is not None:
                    version = skills.skill_update(
                        skill=skill,
                        actor=_actor(request),
                        audit_findings=findings,
                        **data,
                    )
            except versions.PlaybookError as exc:
                _form_error(form, exc)
            else:
                if findings is not None:
                    messages.success(request, f"Saved; now version {version.number}.")
                    return redirect("playbooks:skill", ns=ns, slug=slug)
        status = 400
    return render(
        request,
        "playbooks/skill.html",
        {
            "namespace": skill.namespace,
            "skill": skill,
            "form": form,
            "versions": selectors.skill_version_list(skill=skill),
            "hash": versions.text_hash(skill.text),
            "audit": getattr(form, "audit_report", None),
        },
        status=status,
    )


@skills_required
@require_POST
def skill_rollback(request, ns, slug, number):
    skill = _skill(request, ns, slug)
    try:
        version = versions.skill_rollback(
            skill=skill, number=number, actor=_actor(request)
        )
    except versions.PlaybookError as exc:
        raise Http404(str(exc))
    messages.success(
        request, f"Rolled back to version {number}: now version {version.number}."
    )
    return redirect("playbooks:skill", ns=ns, slug=slug)


@policy_required
@require_http_methods(["GET", "POST"])
def policy_edit(request, ns):
    namespace = _namespace(request, ns, "policy.edit")
    policy = selectors.policy_get(namespace=namespace)
    initial = {f: "\n".join(getattr(policy, f) or []) for f in policies.POLICY_FIELDS}
    initial["agent_policy"] = selectors.agent_policy_text(namespace=namespace)
    form = PolicyForm(request.POST or None, initial=initial)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = dict(form.cleaned_data)
            agent_policy = data.pop("agent_policy", "")
            try:
                with transaction.atomic():
                    policies.policy_update(
                        namespace=namespace, actor=_actor(request), **data
                    )
                    policies.agent_policy_set(
                        namespace=namespace, text=agent_policy, actor=_actor(request)
                    )
            except versions.PlaybookError as exc:
                _form_error(form, exc)
            else:
                messages.success(request, "Policy saved.")
                return redirect("playbooks:policy", ns=ns)
        status = 400
    return render(
        request,
        "playbooks/policy.html",
        {
            "namespace": namespace,
            "policy": policy,
            "form": form,
            "history": namespace.audit_events.filter(action="policy_edit")[:20],
            "agent_policy_history": namespace.audit_events.filter(
                action="agent_policy_edit"
            )[:20],
        },
        status=status,
    )


# --- recall preview and version comparison (reviewers) ------------------------------


def _recall_context(playbook: Playbook, params) -> tuple[dict, int]:
    """The recall preview form and, for a typed task, the exact context an agent gets
    from the current version (`playbooks.recall.recall_preview`: nothing logged)."""
    form = RecallPreviewForm(params or None, initial={"budget_tokens": DEFAULT_BUDGET})
    context = {"playbook": playbook, "recall_form": form}
    if not params:
        return context, 200
    if not form.is_valid():
        context["recall_error"] = "; ".join(
            f"{k}: {e}" for k, errs in form.errors.items() for e in errs
        )
        return context, 400
    task = (form.cleaned_data["task"] or "").strip()
    if task:
        context["recall"] = recall.recall_preview(
            playbook=playbook,
            task=task,
            task_type=form.cleaned_data["task_type"] or "",
            budget_tokens=form.cleaned_data["budget_tokens"] or DEFAULT_BUDGET,
        )
    return context, 200


@reader_required
@require_GET
def playbook_recall_preview(request, ns, slug):
    """What an agent gets for a task typed here (a fragment for htmx; the playbook
    page without JavaScript)."""
    playbook = _playbook(request, ns, slug, "console.use")
    context, status = _recall_context(playbook, request.GET)
    if _is_htmx(request):
        return render(request, "playbooks/_recall_preview.html", context, status=status)
    can_edit = user_allows(request.user, playbook.namespace, "playbooks.edit")
    can_manage = user_allows(request.user, playbook.namespace, "rollout.manage")
    context.pop("playbook")
    full = _detail_context(
        playbook, can_edit=can_edit, can_manage=can_manage, **context
    )
    return render(request, "playbooks/detail.html", full, status=status)


@reader_required
@require_GET
def playbook_compare(request, ns, slug):
    """Any two versions side by side: what was added, removed and changed from `a`
    to `b` (matched by strategy key), changed text as a word-level diff."""
    playbook = _playbook(request, ns, slug, "console.use")
    numbers = list(
        playbook.versions.order_by("-number").values_list("number", flat=True)
    )
    errors = []

    def pick(name, default):
        raw = (request.GET.get(name) or "").strip()
        if not raw:
            return default
        if raw.isdigit() and int(raw) in numbers:
            return int(raw)
        errors.append(f"{name}: no version {raw} of {playbook.slug}.")
        return default

    b = pick("b", playbook.current_version)
    a = pick("a", max((n for n in numbers if n < b), default=b))
    old = selectors.version_get(playbook=playbook, number=a)
    new = selectors.version_get(playbook=playbook, number=b)
    return render(
        request,
        "playbooks/compare.html",
        {
            "playbook": playbook,
            "numbers": numbers,
            "a": old,
            "b": new,
            "errors": errors,
            "diff": versions.content_diff(old.content, new.content),
        },
        status=400 if errors else 200,
    )
