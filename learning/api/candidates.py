"""Learning candidates API: list/detail with CandidateFilter, agent proposals, and the
review actions (approve, deny, conflict) for reviewer tokens."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from learning import limits
from learning.api.auth import allows
from learning.api.errors import Conflict
from learning.api.pagination import Pagination
from learning.candidate_filters import CandidateFilter
from learning.models import (
    MEMORY_KINDS,
    SHAPED_KINDS,
    CandidateKind,
    LearningCandidate,
    Polarity,
)
from learning.services import candidates as candidate_services


class CandidateEvidenceSerializer(serializers.Serializer):
    run = serializers.UUIDField(source="trajectory_id")
    step_indexes = serializers.ListField(child=serializers.IntegerField())
    reflection = serializers.IntegerField(source="reflection_id", allow_null=True)


class CandidateOutputSerializer(serializers.ModelSerializer):
    """A candidate as the API (and the console's JSON) returns it. Needs
    `candidate_list`'s select_related/prefetch_related to stay at constant queries."""

    playbook = serializers.SerializerMethodField()
    skill = serializers.SerializerMethodField()
    evidence_runs = serializers.SerializerMethodField()
    evidence = serializers.SerializerMethodField()
    target = serializers.SerializerMethodField()

    class Meta:
        model = LearningCandidate
        fields = [
            "id",
            "kind",
            "status",
            "content",
            "polarity",
            "when",
            "directive",
            "why",
            "provenance",
            "shape_classified",
            "rationale",
            "confidence",
            "playbook",
            "skill",
            "task_type",
            "agent",
            "target",
            "evidence_runs",
            "evidence_count",
            "evidence",
            "reflection",
            "source",
            "proposed_by",
            "below_floor",
            "audited_at",
            "audit",
            "max_severity",
            "created_at",
            "updated_at",
            "decided_by",
            "decision_note",
            "decided_at",
            "apply_error",
            "applied_at",
            "applied_version",
            "auto_applied",
            "superseded_by",
            "patch",
        ]
        read_only_fields = fields

    def get_playbook(self, candidate) -> str | None:
        return candidate.playbook.slug if candidate.playbook_id else None

    def get_skill(self, candidate) -> str | None:
        return candidate.skill.slug if candidate.skill_id else None

    def _evidence(self, candidate):
        return sorted(candidate.evidence.all(), key=lambda e: (e.created_at, e.pk))

    def get_evidence_runs(self, candidate) -> list[str]:
        return [str(e.trajectory_id) for e in self._evidence(candidate)]

    def get_evidence(self, candidate) -> list[dict]:
        return CandidateEvidenceSerializer(self._evidence(candidate), many=True).data

    def get_target(self, candidate) -> dict:
        if candidate.kind in MEMORY_KINDS:
            return {
                "type": "memory",
                "scope": candidate.memory_scope or "namespace",
                "user_id": candidate.user_id,
                "entity": candidate.entity,
            }
        if candidate.kind == CandidateKind.PATCH_SKILL:
            return {
                "type": "skill",
                "skill": self.get_skill(candidate),
                "base_hash": candidate.base_hash,
            }
        return {"type": "playbook", "playbook": self.get_playbook(candidate)}


class CandidateProposeInputSerializer(serializers.Serializer):
    """A lesson as free text (`content`: its polarity and situation are read from it
    and returned), or in the lesson shape (`polarity`, `when`, `directive`, `why`)."""

    kind = serializers.ChoiceField(choices=CandidateKind.choices)
    content = serializers.CharField(
        max_length=limits.MAX_SKILL_TEXT, required=False, allow_blank=True
    )
    polarity = serializers.ChoiceField(choices=Polarity.choices, required=False)
    when = serializers.CharField(
        max_length=limits.MAX_LESSON_PART, required=False, allow_blank=True
    )
    directive = serializers.CharField(
        max_length=limits.MAX_LESSON_TEXT, required=False, allow_blank=True
    )
    why = serializers.CharField(
        max_length=limits.MAX_LESSON_PART, required=False, allow_blank=True
    )
    rationale = serializers.CharField(
        max_length=20_000, required=False, allow_blank=True
    )
    confidence = serializers.FloatField(
        min_value=0.0, max_value=1.0, required=False, default=0.5
    )
    playbook = serializers.SlugField(max_length=100, required=False, allow_blank=True)
    task_type = serializers.CharField(max_length=200, required=False, allow_blank=True)
    evidence_runs = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        max_length=200,
        default=list,
    )
    user_id = serializers.CharField(max_length=200, required=False, allow_blank=True)
    entity = serializers.CharField(max_length=200, required=False, allow_blank=True)
    memory_scope = serializers.ChoiceField(
        choices=["user", "namespace"], required=False
    )
    skill = serializers.SlugField(max_length=100, required=False, allow_blank=True)
    patch = serializers.CharField(max_length=200_000, required=False, allow_blank=True)
    base_hash = serializers.CharField(max_length=64, required=False, allow_blank=True)

    def validate(self, data):
        if not (data.get("content") or "").strip() and not data.get("directive"):
            raise serializers.ValidationError(
                {
                    "content": "Give the lesson as `content`, or as `directive` (and "
                    "`polarity`)."
                }
            )
        if data["kind"] in SHAPED_KINDS and len(data.get("content") or "") > (
            limits.MAX_LESSON_TEXT
        ):
            raise serializers.ValidationError(
                {"content": f"A lesson is at most {limits.MAX_LESSON_TEXT} characters."}
            )
        if not data.get("playbook") and not data.get("task_type"):
            raise serializers.ValidationError(
                {
                    "playbook": "Name the playbook (slug) or the task_type this proposal is for."
                }
            )
        if data["kind"] == CandidateKind.PATCH_SKILL and not (
            data.get("skill") and data.get("patch")
        ):
            raise serializers.ValidationError(
                {
                    "patch": "A patch_skill proposal needs `skill` (slug) and `patch` (a diff)."
                }
            )
        return data


class ReviewActionInputSerializer(serializers.Serializer):
    note = serializers.CharField(
        max_length=5000, required=False, allow_blank=True, default=""
    )
    override = serializers.BooleanField(required=False, default=False)
    replace_strategy = serializers.IntegerField(
        required=False, allow_null=True, min_value=1
    )


# --- views ---------------------------------------------------------------------


def _candidate_or_404(request, candidate_id) -> LearningCandidate:
    try:
        return candidate_services.candidate_get(
            namespace=request.auth.namespace, candidate_id=int(candidate_id)
        )
    except (ValueError, LearningCandidate.DoesNotExist):
        raise exceptions.NotFound("No candidate with this id in your namespace.")


class CandidateListCreateApi(APIView):
    pagination_class = Pagination  # the schema documents the paginated list

    @extend_schema(
        operation_id="candidates_list",
        parameters=[
            OpenApiParameter(name, str, required=False)
            for name in CandidateFilter.base_filters
        ]
        + [OpenApiParameter("page", int), OpenApiParameter("page_size", int)],
        responses=CandidateOutputSerializer(many=True),
        description="Candidates of your namespace, newest first. Below-floor candidates "
        "are hidden unless show_hidden=true or a decided status is asked for.",
    )
    def get(self, request):
        try:
            qs = candidate_services.candidate_list(
                namespace=request.auth.namespace, filters=request.query_params
            )
        except candidate_services.InvalidCandidateFilters as exc:
            raise exceptions.ValidationError(exc.errors)
        paginator = self.settings.DEFAULT_PAGINATION_CLASS()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(
            CandidateOutputSerializer(page, many=True).data
        )

    @extend_schema(
        operation_id="candidates_propose",
        request=CandidateProposeInputSerializer,
        responses={201: CandidateOutputSerializer, 200: CandidateOutputSerializer},
        description="An agent proposes a learning. Accepted for playbooks in `agentic` or "
        "`propose` mode (audited, then reviewed); refused with 403 for "
        "`background` playbooks, which could apply it without a reviewer. The "
        "same lesson already pending adds evidence instead (200).",
    )
    def post(self, request):
        serializer = CandidateProposeInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token = request.auth
        try:
            candidate, created = candidate_services.candidate_propose(
                namespace=token.namespace,
                proposed_by=f"token:{token.name}",
                data=serializer.validated_data,
            )
        except candidate_services.CandidateInvalid as exc:
            raise exceptions.ValidationError({exc.field: [exc.message]})
        except candidate_services.ProposalRefused as exc:
            raise exceptions.PermissionDenied(str(exc))
        candidate = candidate_services.candidate_get(
            namespace=token.namespace, candidate_id=candidate.pk
        )
        return Response(
            CandidateOutputSerializer(candidate).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class CandidateDetailApi(APIView):
    @extend_schema(
        operation_id="candidates_retrieve", responses=CandidateOutputSerializer
    )
    def get(self, request, candidate_id):
        return Response(
            CandidateOutputSerializer(_candidate_or_404(request, candidate_id)).data
        )


class CandidateReviewApi(APIView):
    """approve | deny | conflict: reviewer and admin tokens, through review.services."""

    permission_classes = [allows("candidates.review")]
    review_action = ""

    @extend_schema(
        request=ReviewActionInputSerializer, responses=CandidateOutputSerializer
    )
    def post(self, request, candidate_id):
        from review import services as review

        candidate = _candidate_or_404(request, candidate_id)
        serializer = ReviewActionInputSerializer(data=request.data or {})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        token = request.auth
        actor = review.Actor(
            label=f"token:{token.name}", is_admin=token.role == "admin"
        )
        kwargs = dict(namespace=token.namespace, candidate_id=candidate.pk, actor=actor)
        try:
            if self.review_action == "approve":
                review.candidate_approve(
                    **kwargs,
                    note=data["note"],
                    override=data["override"],
                    replace_strategy_id=data.get("replace_strategy"),
                )
            elif self.review_action == "deny":
                review.candidate_deny(**kwargs, note=data["note"])
            else:
                review.candidate_mark_conflicted(**kwargs, note=data["note"])
        except review.NoteRequired as exc:
            raise exceptions.ValidationError({"note": [str(exc)]})
        except review.AlreadyDecided as exc:
            raise Conflict(str(exc))
        except review.NeedsOverride as exc:
            raise exceptions.PermissionDenied(str(exc))
        except review.ReviewError as exc:
            raise exceptions.ValidationError({"detail": str(exc)})
        candidate = candidate_services.candidate_get(
            namespace=token.namespace, candidate_id=candidate.pk
        )
        return Response(CandidateOutputSerializer(candidate).data)


class CandidateApproveApi(CandidateReviewApi):
    review_action = "approve"

    @extend_schema(
        operation_id="candidates_approve",
        request=ReviewActionInputSerializer,
        responses=CandidateOutputSerializer,
        description="Approve and apply. Body: note, override (admins, for a "
        "blocking audit finding), replace_strategy (strategy id).",
    )
    def post(self, request, candidate_id):
        return super().post(request, candidate_id)


class CandidateDenyApi(CandidateReviewApi):
    review_action = "deny"

    @extend_schema(
        operation_id="candidates_deny",
        request=ReviewActionInputSerializer,
        responses=CandidateOutputSerializer,
        description="Deny with a reason (`note` is required; agents see it).",
    )
    def post(self, request, candidate_id):
        return super().post(request, candidate_id)


class CandidateConflictApi(CandidateReviewApi):
    review_action = "conflict"

    @extend_schema(
        operation_id="candidates_conflict",
        request=ReviewActionInputSerializer,
        responses=CandidateOutputSerializer,
    )
    def post(self, request, candidate_id):
        return super().post(request, candidate_id)
