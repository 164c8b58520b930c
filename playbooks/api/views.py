"""Playbooks, recall, skills, memories and policy API: thin callers of the services."""

from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from learning.api.auth import require
from learning.api.errors import Conflict
from learning.api.pagination import Pagination
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
from playbooks.api.serializers import (
    AuditFindingsSerializer,
    MemoryOutputSerializer,
    PlaybookDetailOutputSerializer,
    PlaybookInputSerializer,
    PlaybookOutputSerializer,
    PlaybookUpdateSerializer,
    PolicySerializer,
    RecallOutputSerializer,
    RecallQuerySerializer,
    RollbackInputSerializer,
    RolloutNoteSerializer,
    RolloutOutputSerializer,
    RolloutPolicySerializer,
    SkillInputSerializer,
    SkillOutputSerializer,
    SkillUpdateSerializer,
    SkillVersionOutputSerializer,
    StrategyInputSerializer,
    StrategyOutputSerializer,
    VersionDetailOutputSerializer,
    VersionOutputSerializer,
)
from playbooks.models import Playbook, PlaybookVersion, Skill, Strategy


def actor_of(request) -> str:
    return f"token:{request.auth.name}"


def raise_for(exc: versions.PlaybookError):
    if exc.code == "not_found":
        raise exceptions.NotFound({exc.field: [str(exc)]})
    if exc.code in ("duplicate", "conflict"):
        raise Conflict({exc.field: [str(exc)]})
    raise exceptions.ValidationError({exc.field: [str(exc)]})


def get_playbook(request, slug) -> Playbook:
    try:
        return selectors.playbook_get(namespace=request.auth.namespace, slug=slug)
    except Playbook.DoesNotExist:
        raise exceptions.NotFound("No playbook with this slug in your namespace.")


def get_skill(request, slug) -> Skill:
    try:
        return selectors.skill_get(namespace=request.auth.namespace, slug=slug)
    except Skill.DoesNotExist:
        raise exceptions.NotFound("No skill with this slug in your namespace.")


def playbook_payload(playbook: Playbook, *, with_strategies: bool = False) -> dict:
    playbook.flagged_versions = selectors.playbook_flagged_numbers(playbook)
    if with_strategies:
        playbook.strategies_list = list(selectors.strategy_list(playbook=playbook))
        if getattr(playbook, "strategy_count", None) is None:
            playbook.strategy_count = len(playbook.strategies_list)
        data = PlaybookOutputSerializer(playbook).data
        data["strategies"] = StrategyOutputSerializer(
            playbook.strategies_list, many=True
        ).data
        return data
    return PlaybookOutputSerializer(playbook).data


class PlaybookListCreateApi(APIView):
    pagination_class = Pagination  # the schema documents the paginated list

    @extend_schema(
        operation_id="playbooks_list", responses=PlaybookOutputSerializer(many=True)
    )
    def get(self, request):
        qs = selectors.playbook_list(namespace=request.auth.namespace)
        paginator = self.settings.DEFAULT_PAGINATION_CLASS()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response([playbook_payload(p) for p in page])

    @extend_schema(
        operation_id="playbooks_create",
        request=PlaybookInputSerializer,
        responses={201: PlaybookDetailOutputSerializer},
        description="Admin tokens. A new playbook starts at version 1, empty; 409 when "
        "the slug is taken in this namespace.",
    )
    def post(self, request):
        require(request, "playbooks.edit")
        serializer = PlaybookInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            playbook = services.playbook_create_checked(
                namespace=request.auth.namespace,
                actor=actor_of(request),
                **serializer.validated_data,
            )
        except versions.PlaybookError as exc:
            raise_for(exc)
        return Response(
            playbook_payload(playbook, with_strategies=True),
            status=status.HTTP_201_CREATED,
        )


class PlaybookDetailApi(APIView):
    @extend_schema(
        operation_id="playbooks_retrieve", responses=PlaybookDetailOutputSerializer
    )
    def get(self, request, slug):
        return Response(
            playbook_payload(get_playbook(request, slug), with_strategies=True)
        )

    @extend_schema(
        operation_id="playbooks_update",
        request=PlaybookUpdateSerializer,
        responses=PlaybookDetailOutputSerializer,
        description="Admin tokens: name, description, scope, learning mode, auto-apply "
        "threshold, task types (settings, not content: no new version).",
    )
    def patch(self, request, slug):
        require(request, "playbooks.edit")
        playbook = get_playbook(request, slug)
        serializer = PlaybookUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        agent_policy = data.pop("agent_policy", None)
        try:
            with transaction.atomic():
                if data:
                    playbook = services.playbook_update(
                        playbook=playbook, actor=actor_of(request), **data
                    )
                if agent_policy is not None:
                    policies.agent_policy_set(
                        namespace=playbook.namespace,
                        playbook=playbook,
                        text=agent_policy,
                        actor=actor_of(request),
                    )
        except versions.PlaybookError as exc:
            raise_for(exc)
        return Response(playbook_payload(playbook, with_strategies=True))


class PlaybookStrategiesApi(APIView):
    @extend_schema(
        operation_id="playbooks_strategies_list",
        parameters=[OpenApiParameter("include_retired", bool)],
        responses=StrategyOutputSerializer(many=True),
    )
    def get(self, request, slug):
        playbook = get_playbook(request, slug)
        include = request.query_params.get("include_retired", "").lower() in {
            "1",
            "true",
        }
        qs = selectors.strategy_list(playbook=playbook, include_retired=include)
        return Response(StrategyOutputSerializer(qs, many=True).data)

    @extend_schema(
        operation_id="playbooks_strategies_write",
        request=StrategyInputSerializer,
        responses={
            201: PlaybookDetailOutputSerializer,
            200: PlaybookDetailOutputSerializer,
            409: AuditFindingsSerializer,
        },
        description="Admin tokens. Without `id`: add a strategy (201). With `id`: edit "
        "its fields, move it to `position`, or retire it with "
        '`"retire": true` (200). Each change is a new version. A new or edited text '
        "is audited first (the audits candidates get, and the agent's policy): warn "
        "or block findings answer 409 with them, unless `save_anyway` is true (then "
        "they are recorded in the version's audit event).",
    )
    def post(self, request, slug):
        require(request, "playbooks.edit")
        playbook = get_playbook(request, slug)
        serializer = StrategyInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        actor, note = actor_of(request), data.pop("note", "")
        save_anyway = data.pop("save_anyway", False)
        code = status.HTTP_200_OK
        try:
            if "id" not in data:
                data.pop("retire", None)
                findings = _audit_first(
                    playbook=playbook, data=data, save_anyway=save_anyway
                )
                services.strategy_add(
                    playbook=playbook,
                    actor=actor,
                    note=note,
                    audit_findings=findings,
                    **data,
                )
                code = status.HTTP_201_CREATED
            elif data.pop("retire", False):
                services.strategy_retire(
                    playbook=playbook, strategy_id=data["id"], actor=actor, note=note
                )
            else:
                _strategy_change(
                    playbook=playbook,
                    data=data,
                    actor=actor,
                    note=note,
                    save_anyway=save_anyway,
                )
        except versions.PlaybookError as exc:
            raise_for(exc)
        except AuditFindings as exc:
            return exc.response()
        playbook.refresh_from_db()
        return Response(playbook_payload(playbook, with_strategies=True), status=code)


class AuditFindings(Exception):
    """A hand edit whose text the audit flags: answered 409 with the findings, saved
    only when asked again with `save_anyway`."""

    def __init__(self, report: dict):
        self.report = report

    def response(self) -> Response:
        return Response(
            {
                "detail": "The audit has warn or block findings on this text; nothing "
                "was saved. Send it again with save_anyway=true to save it with the "
                "findings recorded.",
                "code": "audit_findings",
                "audit": self.report,
            },
            status=status.HTTP_409_CONFLICT,
        )


TEXT_FIELDS = ("description", "polarity", "when", "directive")


def _audit_first(
    *, playbook, data: dict, save_anyway: bool, strategy=None, text: str = ""
) -> list:
    """The audit of the strategy text about to be saved (`curated_text_audit`):
    raises AuditFindings when it flags it and the admin did not say save_anyway;
    else the findings to record."""
    report = curated_text_audit(
        namespace=playbook.namespace,
        playbook=playbook,
        strategy_id=strategy.pk if strategy else None,
        text=data.get("description", text),
        type=data.get("type") or (strategy.type if strategy else "helpful"),
        polarity=data.get("polarity", ""),
        when=data.get("when", ""),
        directive=data.get("directive", ""),
    )
    summary = curated_findings_summary(report)
    if summary and not save_anyway:
        raise AuditFindings(report)
    return summary


def _strategy_change(*, playbook, data: dict, actor: str, note: str, save_anyway):
    strategy_id = data.pop("id")
    position = data.pop("position", None)
    if not data and position is None:
        raise exceptions.ValidationError(
            {
                "description": [
                    "Nothing to change: give fields to edit, a position, or retire."
                ]
            }
        )
    if data:
        findings = []
        if set(TEXT_FIELDS) & set(data):
            strategy = Strategy.objects.filter(
                playbook=playbook, pk=strategy_id, active=True
            ).first()
            if strategy is not None:
                findings = _audit_first(
                    playbook=playbook,
                    data=data,
                    save_anyway=save_anyway,
                    strategy=strategy,
                    text="" if "description" not in data else data["description"],
                )
        services.strategy_edit(
            playbook=playbook,
            strategy_id=strategy_id,
            actor=actor,
            note=note,
            audit_findings=findings,
            **data,
        )
    if position is not None:
        services.strategy_move(
            playbook=playbook, strategy_id=strategy_id, to_index=position, actor=actor
        )


class PlaybookStrategyStatsApi(APIView):
    @extend_schema(operation_id="playbooks_strategy_stats", responses=dict)
    def get(self, request, slug, strategy_id):
        playbook = get_playbook(request, slug)
        strategy = (
            Strategy.objects.filter(playbook=playbook, pk=strategy_id)
            .select_related("playbook")
            .first()
        )
        if strategy is None:
            raise exceptions.NotFound("No such strategy in this playbook.")
        return Response(quality.strategy_outcomes(strategy=strategy))


class PlaybookVersionsApi(APIView):
    pagination_class = Pagination  # the schema documents the paginated list

    @extend_schema(
        operation_id="playbooks_versions_list",
        responses=VersionOutputSerializer(many=True),
    )
    def get(self, request, slug):
        playbook = get_playbook(request, slug)
        qs = selectors.version_list(playbook=playbook)
        paginator = self.settings.DEFAULT_PAGINATION_CLASS()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(
            VersionOutputSerializer(page, many=True).data
        )


class PlaybookVersionDetailApi(APIView):
    @extend_schema(
        operation_id="playbooks_versions_retrieve",
        responses=VersionDetailOutputSerializer,
    )
    def get(self, request, slug, number):
        playbook = get_playbook(request, slug)
        try:
            version = selectors.version_get(playbook=playbook, number=number)
        except PlaybookVersion.DoesNotExist:
            raise exceptions.NotFound(f"No version {number}.")
        return Response(VersionDetailOutputSerializer(version).data)


class PlaybookRollbackApi(APIView):
    @extend_schema(
        operation_id="playbooks_versions_rollback",
        request=RollbackInputSerializer,
        responses={201: VersionDetailOutputSerializer},
        description="Admin tokens: a new version whose content equals version n's.",
    )
    def post(self, request, slug, number):
        require(request, "playbooks.edit")
        playbook = get_playbook(request, slug)
        serializer = RollbackInputSerializer(data=request.data or {})
        serializer.is_valid(raise_exception=True)
        try:
            version = versions.playbook_rollback(
                playbook=playbook,
                number=number,
                actor=actor_of(request),
                note=serializer.validated_data["note"],
            )
        except versions.PlaybookError as exc:
            raise_for(exc)
        return Response(
            VersionDetailOutputSerializer(version).data, status=status.HTTP_201_CREATED
        )


class PlaybookQualityApi(APIView):
    @extend_schema(
        operation_id="playbooks_quality",
        responses=dict,
        description="The quality gate's stored figures per version (a canary's: its "
        "cohort against production's, as its rollout ended).",
    )
    def get(self, request, slug):
        playbook = get_playbook(request, slug)
        versions = (
            PlaybookVersion.objects.filter(playbook=playbook)
            .only("number", "flagged", "flag_reason", "quality")
            .order_by("-number")
        )
        return Response(
            {
                "playbook": playbook.slug,
                "versions": [
                    {
                        "number": v.number,
                        "flagged": v.flagged,
                        "flag_reason": v.flag_reason,
                        "quality": v.quality,
                    }
                    for v in versions
                ],
            }
        )

    @extend_schema(
        operation_id="playbooks_quality_evaluate",
        request=None,
        responses=dict,
        description="Admin tokens: the verdict on the running rollout now (promote, "
        "roll back or keep waiting), as the scheduled gate would. Answers the "
        "verdict (null when no rollout runs) and the rollout state after it.",
    )
    def post(self, request, slug):
        require(request, "playbooks.edit")
        playbook = get_playbook(request, slug)
        verdict = rollout.rollout_gate_evaluate(
            playbook=playbook, actor=actor_of(request)
        )
        playbook.refresh_from_db()
        return Response(
            {
                "playbook": playbook.slug,
                "verdict": verdict,
                "rollout": rollout.rollout_status(playbook=playbook),
            }
        )


class PlaybookRolloutApi(APIView):
    @extend_schema(
        operation_id="playbooks_rollout_retrieve",
        responses=RolloutOutputSerializer,
        description="Labels (production, canary), the policy and the latest rollout "
        "with its cohorts and decision.",
    )
    def get(self, request, slug):
        playbook = get_playbook(request, slug)
        return Response(rollout.rollout_status(playbook=playbook))

    @extend_schema(
        operation_id="playbooks_rollout_policy_set",
        request=RolloutPolicySerializer,
        responses={200: RolloutOutputSerializer},
        description="Admin tokens: set the rollout policy; from now on each new "
        "version becomes the canary (a running rollout keeps its parameters).",
    )
    def put(self, request, slug):
        require(request, "rollout.manage")
        playbook = get_playbook(request, slug)
        serializer = RolloutPolicySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            rollout.rollout_policy_set(
                playbook=playbook, actor=actor_of(request), **serializer.validated_data
            )
        except versions.PlaybookError as exc:
            raise_for(exc)
        return Response(rollout.rollout_status(playbook=playbook))

    @extend_schema(
        operation_id="playbooks_rollout_policy_remove",
        request=None,
        responses={204: None},
        description="Admin tokens: remove the policy (new versions become production "
        "at once). 409 while a rollout runs: promote or abort it first.",
    )
    def delete(self, request, slug):
        require(request, "rollout.manage")
        playbook = get_playbook(request, slug)
        try:
            rollout.rollout_policy_remove(playbook=playbook, actor=actor_of(request))
        except versions.PlaybookError as exc:
            raise_for(exc)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PlaybookRolloutActionApi(APIView):
    """promote / abort: the running canary becomes production, or is dropped."""

    action = ""

    def post(self, request, slug):
        require(request, "rollout.manage")
        playbook = get_playbook(request, slug)
        serializer = RolloutNoteSerializer(data=request.data or {})
        serializer.is_valid(raise_exception=True)
        act = (
            rollout.rollout_promote
            if self.action == "promote"
            else rollout.rollout_abort
        )
        try:
            act(
                playbook=playbook,
                actor=actor_of(request),
                note=serializer.validated_data["note"],
            )
        except versions.PlaybookError as exc:
            raise_for(exc)
        playbook.refresh_from_db()
        return Response(rollout.rollout_status(playbook=playbook))


class PlaybookRolloutPromoteApi(PlaybookRolloutActionApi):
    action = "promote"

    @extend_schema(
        operation_id="playbooks_rollout_promote",
        request=RolloutNoteSerializer,
        responses=RolloutOutputSerializer,
        description="Admin tokens: make the canary production now. 409 when no "
        "rollout runs.",
    )
    def post(self, request, slug):
        return super().post(request, slug)


class PlaybookRolloutAbortApi(PlaybookRolloutActionApi):
    action = "abort"

    @extend_schema(
        operation_id="playbooks_rollout_abort",
        request=RolloutNoteSerializer,
        responses=RolloutOutputSerializer,
        description="Admin tokens: drop the canary now (production stays; the live "
        "strategies go back to production's). 409 when no rollout runs.",
    )
    def post(self, request, slug):
        return super().post(request, slug)


class PlaybookContextApi(APIView):
    @extend_schema(
        operation_id="playbooks_context",
        parameters=[
            OpenApiParameter("task", str, required=True),
            OpenApiParameter("task_type", str),
            OpenApiParameter(
                "budget_tokens",
                int,
                description=f"default {recall.DEFAULT_BUDGET}, at most "
                f"{recall.MAX_BUDGET}; tokens ~ characters / 4",
            ),
            OpenApiParameter(
                "session_id", str, description="links the recall to a run"
            ),
            OpenApiParameter("run", str, description="the run's external_id, if known"),
            OpenApiParameter(
                "user_id",
                str,
                description="add this user's memories (and "
                "facts about entities the task names), up to a quarter of "
                "the budget",
            ),
            OpenApiParameter(
                "version",
                int,
                description="pin this version (for evaluation): cohort 'pinned'",
            ),
        ],
        responses=RecallOutputSerializer,
        description="Recall: the playbook's most useful strategies for the task, ranked "
        "by relevance, confidence, helpful/harmful counts and recency, inside "
        "the token budget. While a rollout runs, the canary goes to a sticky share "
        "of sessions (by session_id, else user_id, else run), production to the "
        'rest (`cohort`). Report the version as "slug@version" in the run\'s '
        "playbook_versions, with the run's session_id.",
    )
    def get(self, request, slug):
        playbook = get_playbook(request, slug)
        serializer = RecallQuerySerializer(data=request.query_params.dict())
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            result = recall.playbook_recall(
                playbook=playbook,
                task=data["task"],
                task_type=data["task_type"],
                budget_tokens=data["budget_tokens"],
                requested_by=actor_of(request),
                session_id=data["session_id"],
                run_external_id=data["run"],
                user_id=data.get("user_id"),
                version=data.get("version"),
            )
        except recall.UnknownVersion as exc:
            raise exceptions.NotFound({"version": [str(exc)]})
        return Response(result.as_dict())


# --- skills, memories, policy --------------------------------------------------------


def skill_payload(skill: Skill) -> dict:
    skill.hash = versions.text_hash(skill.text)
    return SkillOutputSerializer(skill).data


class SkillListCreateApi(APIView):
    pagination_class = Pagination  # the schema documents the paginated list

    @extend_schema(
        operation_id="skills_list", responses=SkillOutputSerializer(many=True)
    )
    def get(self, request):
        qs = selectors.skill_list(namespace=request.auth.namespace)
        paginator = self.settings.DEFAULT_PAGINATION_CLASS()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response([skill_payload(s) for s in page])

    @extend_schema(
        operation_id="skills_create",
        request=SkillInputSerializer,
        responses={201: SkillOutputSerializer},
    )
    def post(self, request):
        require(request, "skills.edit")
        serializer = SkillInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            skill = skills.skill_create(
                namespace=request.auth.namespace,
                actor=actor_of(request),
                **serializer.validated_data,
            )
        except versions.PlaybookError as exc:
            raise_for(exc)
        return Response(skill_payload(skill), status=status.HTTP_201_CREATED)


class SkillDetailApi(APIView):
    @extend_schema(operation_id="skills_retrieve", responses=SkillOutputSerializer)
    def get(self, request, slug):
        return Response(skill_payload(get_skill(request, slug)))

    @extend_schema(
        operation_id="skills_update",
        request=SkillUpdateSerializer,
        responses={200: SkillOutputSerializer, 409: AuditFindingsSerializer},
        description="Admin tokens: new text, a new version with its diff. The text "
        "is audited first: warn or block findings answer 409 with them unless "
        "save_anyway=true (then they are recorded in the version's audit event).",
    )
    def put(self, request, slug):
        require(request, "skills.edit")
        skill = get_skill(request, slug)
        serializer = SkillUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        save_anyway = data.pop("save_anyway", False)
        report = curated_text_audit(
            namespace=skill.namespace, skill=skill, text=data["text"]
        )
        findings = curated_findings_summary(report)
        if findings and not save_anyway:
            return AuditFindings(report).response()
        try:
            skills.skill_update(
                skill=skill, actor=actor_of(request), audit_findings=findings, **data
            )
        except versions.PlaybookError as exc:
            raise_for(exc)
        skill.refresh_from_db()
        return Response(skill_payload(skill))


class SkillVersionsApi(APIView):
    pagination_class = Pagination  # the schema documents the paginated list

    @extend_schema(
        operation_id="skills_versions_list",
        responses=SkillVersionOutputSerializer(many=True),
    )
    def get(self, request, slug):
        qs = selectors.skill_version_list(skill=get_skill(request, slug))
        paginator = self.settings.DEFAULT_PAGINATION_CLASS()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(
            SkillVersionOutputSerializer(page, many=True).data
        )


class SkillRollbackApi(APIView):
    @extend_schema(
        operation_id="skills_versions_rollback",
        request=None,
        responses={201: SkillVersionOutputSerializer},
    )
    def post(self, request, slug, number):
        require(request, "skills.edit")
        skill = get_skill(request, slug)
        try:
            version = versions.skill_rollback(
                skill=skill, number=number, actor=actor_of(request)
            )
        except versions.PlaybookError as exc:
            raise_for(exc)
        return Response(
            SkillVersionOutputSerializer(version).data, status=status.HTTP_201_CREATED
        )


class MemoryListApi(APIView):
    pagination_class = Pagination  # the schema documents the paginated list

    @extend_schema(
        operation_id="memories_list",
        parameters=[OpenApiParameter("user_id", str)],
        responses=MemoryOutputSerializer(many=True),
    )
    def get(self, request):
        qs = selectors.memory_list(
            namespace=request.auth.namespace,
            user_id=request.query_params.get("user_id"),
        )
        paginator = self.settings.DEFAULT_PAGINATION_CLASS()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(
            MemoryOutputSerializer(page, many=True).data
        )


def _policy_payload(namespace) -> dict:
    policy = selectors.policy_get(namespace=namespace)
    policy.agent_policy = selectors.agent_policy_text(namespace=namespace)
    return PolicySerializer(policy).data


class PolicyApi(APIView):
    @extend_schema(operation_id="policy_retrieve", responses=PolicySerializer)
    def get(self, request):
        return Response(_policy_payload(request.auth.namespace))

    @extend_schema(
        operation_id="policy_update",
        request=PolicySerializer,
        responses=PolicySerializer,
        description="Admin tokens: the fields given replace the stored lists; "
        "`agent_policy` replaces the agent's policy text (empty removes it).",
    )
    def put(self, request):
        require(request, "policy.edit")
        serializer = PolicySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        agent_policy = data.pop("agent_policy", None)
        try:
            with transaction.atomic():
                policies.policy_update(
                    namespace=request.auth.namespace, actor=actor_of(request), **data
                )
                if agent_policy is not None:
                    policies.agent_policy_set(
                        namespace=request.auth.namespace,
                        text=agent_policy,
                        actor=actor_of(request),
                    )
        except versions.PlaybookError as exc:
            raise_for(exc)
        return Response(_policy_payload(request.auth.namespace))


# --- candidates: what applying would do, and undoing it ----------------------------


def get_candidate(request, candidate_id):
    from learning.models import LearningCandidate

    try:
        return LearningCandidate.objects.select_related(
            "playbook", "skill", "namespace"
        ).get(namespace=request.auth.namespace, pk=int(candidate_id))
    except (ValueError, LearningCandidate.DoesNotExist):
        raise exceptions.NotFound("No candidate with this id in your namespace.")


class CandidatePreviewApi(APIView):
    @extend_schema(
        operation_id="candidates_apply_preview",
        responses=dict,
        description="What approving would change: target, name, from/to "
        "version and the diff (or `error` when it could not apply).",
    )
    def get(self, request, candidate_id):
        return Response(
            apply.candidate_apply_preview(
                candidate=get_candidate(request, candidate_id)
            )
        )


class CandidateRevertApi(APIView):
    @extend_schema(
        operation_id="candidates_revert",
        request=RollbackInputSerializer,
        responses=dict,
        description="Reviewer tokens: undo an applied (e.g. auto-applied) "
        "candidate with a new version; it stays `applied` and the "
        "audit trail records the revert. 409 when it cannot.",
    )
    def post(self, request, candidate_id):
        require(request, "candidates.revert")
        candidate = get_candidate(request, candidate_id)
        serializer = RollbackInputSerializer(data=request.data or {})
        serializer.is_valid(raise_exception=True)
        try:
            result = apply.candidate_revert(
                candidate=candidate,
                actor=actor_of(request),
                note=serializer.validated_data["note"],
            )
        except apply.ApplyFailed as exc:
            raise Conflict(str(exc))
        return Response(result)
