"""Runs API: thin callers of learning.services.runs and learning.selectors."""

import uuid

from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    PolymorphicProxySerializer,
    extend_schema,
    inline_serializer,
)
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from learning import selectors
from learning.api.errors import Conflict
from learning.api.serializers import (
    FeedbackInputSerializer,
    FeedbackOutputSerializer,
    FeedbackResultSerializer,
    RunBatchInputSerializer,
    RunBatchResultSerializer,
    RunCompleteInputSerializer,
    RunDetailOutputSerializer,
    RunInputSerializer,
    RunOutputSerializer,
    StepOutputSerializer,
    StepsInputSerializer,
)
from learning.filters import RunFilter
from learning.models import RunStatus, Trajectory
from learning.services import runs as run_services
from learning.throttling import IngestRateThrottle


def get_run_or_404(request, run_id) -> Trajectory:
    try:
        return selectors.run_get(
            namespace=request.auth.namespace, run_id=uuid.UUID(str(run_id))
        )
    except (ValueError, Trajectory.DoesNotExist):
        raise exceptions.NotFound("No run with this id in your namespace.")


_FILTER_TYPES = {
    "status": (str, "Run status; repeat for several (status=failure&status=partial)."),
    "min_score": (float, "Effective score at least this."),
    "max_score": (float, "Effective score at most this."),
    "created_after": (OpenApiTypes.DATETIME, "Created at or after (ISO 8601)."),
    "created_before": (OpenApiTypes.DATETIME, "Created before (ISO 8601)."),
    "needs_relearning": (bool, "Marked for relearning by feedback."),
    "q": (str, "Text in the task description."),
}
RUN_LIST_PARAMETERS = [
    OpenApiParameter(
        name,
        _FILTER_TYPES.get(name, (str, ""))[0],
        required=False,
        description=_FILTER_TYPES.get(name, (str, ""))[1],
        enum=RunStatus.values if name == "status" else None,
        many=True if name == "status" else None,
        explode=True if name == "status" else None,
    )
    for name in RunFilter.base_filters
] + [
    OpenApiParameter("page", int, description="Page number, from 1."),
    OpenApiParameter(
        "page_size", int, description="Runs per page (default 50, at most 500)."
    ),
]
RUN_PAGE = inline_serializer(
    "PaginatedRunList",
    fields={
        "count": serializers.IntegerField(),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": RunOutputSerializer(many=True),
    },
)
RUN_CREATE_RESULT = PolymorphicProxySerializer(
    component_name="RunCreateResult",
    serializers=[RunDetailOutputSerializer, RunBatchResultSerializer],
    resource_type_field_name=None,
)


class RunListCreateApi(APIView):
    throttle_classes = [IngestRateThrottle]  # POSTs only (learning/throttling.py)

    @extend_schema(
        operation_id="runs_list",
        parameters=RUN_LIST_PARAMETERS,
        responses=RUN_PAGE,
    )
    def get(self, request):
        try:
            qs = selectors.run_list(
                namespace=request.auth.namespace, filters=request.query_params
            )
        except selectors.InvalidFilters as exc:
            raise exceptions.ValidationError(exc.errors)
        paginator = self.settings.DEFAULT_PAGINATION_CLASS()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(
            RunOutputSerializer(page, many=True).data
        )

    @extend_schema(
        operation_id="runs_create",
        request=PolymorphicProxySerializer(
            component_name="RunCreateInput",
            serializers=[RunInputSerializer, RunBatchInputSerializer],
            resource_type_field_name=None,
        ),
        responses={201: RUN_CREATE_RESULT, 200: RUN_CREATE_RESULT},
        description=(
            'Post one run with its steps, or a batch as {"runs": [...]}. Idempotent on '
            "external_id within the namespace: a repeat returns the stored run with 200."
        ),
    )
    def post(self, request):
        data = request.data
        if not isinstance(data, dict):
            raise exceptions.ValidationError(
                {
                    "non_field_errors": [
                        'The body must be a JSON object: one run, or {"runs": [...]}; '
                        f"got {type(data).__name__ if data is not None else 'nothing'}."
                    ]
                }
            )
        is_batch = "runs" in data
        serializer = (RunBatchInputSerializer if is_batch else RunInputSerializer)(
            data=data
        )
        serializer.is_valid(raise_exception=True)
        payloads = (
            serializer.validated_data["runs"]
            if is_batch
            else [serializer.validated_data]
        )
        token = request.auth
        results = run_services.runs_ingest(
            namespace=token.namespace, agent=token.name, runs=payloads
        )
        if is_batch:
            body = {
                "created": sum(r.created for r in results),
                "existing": sum(not r.created for r in results),
                "runs": [
                    {
                        "id": str(r.run.id),
                        "external_id": r.run.external_id,
                        "created": r.created,
                    }
                    for r in results
                ],
            }
            code = status.HTTP_201_CREATED if body["created"] else status.HTTP_200_OK
            return Response(body, status=code)
        result = results[0]
        if result.created:
            body = created_run_payload(result)
            return Response(body, status=status.HTTP_201_CREATED)
        run = selectors.run_get(namespace=token.namespace, run_id=result.run.id)
        return Response(RunDetailOutputSerializer(run).data, status=status.HTTP_200_OK)


def created_run_payload(result) -> dict:
    """The answer to a single post that created the run, from what was just stored
    (no second read of the run and its steps)."""
    run = result.run
    run.step_count = len(result.steps)
    body = RunOutputSerializer(run).data
    body["steps"] = [
        {
            "index": step["index"],
            "type": step["type"],
            "description": step["description"],
            "result": step.get("result"),
            "tool": step.get("tool", ""),
            "tokens": step.get("tokens"),
            "started_at": _iso(step.get("started_at")),
            "ended_at": _iso(step.get("ended_at")),
            "created_at": _iso(step["created_at"]),
        }
        for step in result.steps
    ]
    body["feedback"] = []
    return body


def _iso(value):
    return serializers.DateTimeField().to_representation(value) if value else None


class RunDetailApi(APIView):
    @extend_schema(operation_id="runs_retrieve", responses=RunDetailOutputSerializer)
    def get(self, request, run_id):
        return Response(RunDetailOutputSerializer(get_run_or_404(request, run_id)).data)


class RunStepsApi(APIView):
    @extend_schema(
        operation_id="runs_steps_append",
        request=StepsInputSerializer,
        responses={201: StepOutputSerializer(many=True)},
    )
    def post(self, request, run_id):
        run = get_run_or_404(request, run_id)
        serializer = StepsInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            steps = run_services.run_steps_append(
                run=run, steps=serializer.validated_data["steps"]
            )
        except run_services.RunNotRunning as exc:
            raise Conflict(str(exc))
        return Response(
            StepOutputSerializer(steps, many=True).data, status=status.HTTP_201_CREATED
        )


class RunCompleteApi(APIView):
    @extend_schema(
        operation_id="runs_complete",
        request=RunCompleteInputSerializer,
        responses=RunOutputSerializer,
    )
    def post(self, request, run_id):
        run = get_run_or_404(request, run_id)
        serializer = RunCompleteInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            run = run_services.run_complete(run=run, data=serializer.validated_data)
        except run_services.RunNotRunning as exc:
            raise Conflict(str(exc))
        run = selectors.run_get(namespace=request.auth.namespace, run_id=run.id)
        return Response(RunOutputSerializer(run).data)


class RunFeedbackApi(APIView):
    @extend_schema(
        operation_id="runs_feedback_create",
        request=FeedbackInputSerializer,
        responses={201: FeedbackResultSerializer},
    )
    def post(self, request, run_id):
        run = get_run_or_404(request, run_id)
        serializer = FeedbackInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        feedback, run = run_services.feedback_add(
            run=run, data=serializer.validated_data
        )
        run = selectors.run_get(namespace=request.auth.namespace, run_id=run.id)
        return Response(
            {
                "feedback": FeedbackOutputSerializer(feedback).data,
                "effective_score": run.effective_score,
                "needs_relearning": run.needs_relearning,
                "relearning_priority": run.relearning_priority,
                "run": RunOutputSerializer(run).data,
            },
            status=status.HTTP_201_CREATED,
        )


@require_GET
def healthz(request):
    """Liveness of the web process, the database and whether a worker is alive."""
    from learning.services.health import worker_status

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        database = "ok"
    except Exception as exc:  # noqa: BLE001 - health reports, never raises
        database = f"error: {exc.__class__.__name__}"
    worker = worker_status()
    body = {
        "status": "ok" if database == "ok" else "degraded",
        "database": database,
        **worker,
    }
    return JsonResponse(body, status=200 if database == "ok" else 503)
