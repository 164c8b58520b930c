"""Webhooks API (admin tokens): register URLs for signed events, read the delivery log."""

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from learning.api.auth import allows
from learning.api.pagination import Pagination
from learning.models import Webhook, WebhookDelivery
from learning.webhooks import WEBHOOK_EVENTS, webhook_create


class WebhookInputSerializer(serializers.Serializer):
    url = serializers.URLField(max_length=500)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WEBHOOK_EVENTS),
        required=False,
        max_length=10,
    )
    description = serializers.CharField(
        max_length=200, required=False, allow_blank=True
    )
    active = serializers.BooleanField(required=False)


class WebhookOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Webhook
        fields = [
            "id",
            "url",
            "events",
            "active",
            "description",
            "created_by",
            "created_at",
        ]


class WebhookCreatedSerializer(WebhookOutputSerializer):
    class Meta(WebhookOutputSerializer.Meta):
        fields = WebhookOutputSerializer.Meta.fields + ["secret"]


class DeliveryOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event_id",
            "event",
            "status",
            "attempts",
            "last_status_code",
            "last_error",
            "next_attempt_at",
            "delivered_at",
            "created_at",
            "payload",
        ]


def _hook_or_404(request, webhook_id) -> Webhook:
    hook = Webhook.objects.filter(
        namespace=request.auth.namespace, pk=webhook_id
    ).first()
    if hook is None:
        raise exceptions.NotFound("No webhook with this id in your namespace.")
    return hook


class WebhookListCreateApi(APIView):
    pagination_class = Pagination  # the schema documents the paginated list
    permission_classes = [allows("webhooks.manage")]

    @extend_schema(
        operation_id="webhooks_list", responses=WebhookOutputSerializer(many=True)
    )
    def get(self, request):
        hooks = Webhook.objects.filter(namespace=request.auth.namespace).order_by("id")
        paginator = self.settings.DEFAULT_PAGINATION_CLASS()
        page = paginator.paginate_queryset(hooks, request, view=self)
        return paginator.get_paginated_response(
            WebhookOutputSerializer(page, many=True).data
        )

    @extend_schema(
        operation_id="webhooks_create",
        request=WebhookInputSerializer,
        responses={201: WebhookCreatedSerializer},
        description="The signing secret is in this answer only.",
    )
    def post(self, request):
        serializer = WebhookInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        hook = webhook_create(
            namespace=request.auth.namespace,
            url=data["url"],
            events=data.get("events"),
            description=data.get("description", ""),
            created_by=str(request.user),
        )
        return Response(
            WebhookCreatedSerializer(hook).data, status=status.HTTP_201_CREATED
        )


class WebhookDetailApi(APIView):
    permission_classes = [allows("webhooks.manage")]

    @extend_schema(operation_id="webhooks_retrieve", responses=WebhookOutputSerializer)
    def get(self, request, webhook_id):
        return Response(WebhookOutputSerializer(_hook_or_404(request, webhook_id)).data)

    @extend_schema(operation_id="webhooks_destroy", responses={204: None})
    def delete(self, request, webhook_id):
        _hook_or_404(request, webhook_id).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookDeliveriesApi(APIView):
    pagination_class = Pagination  # the schema documents the paginated list
    permission_classes = [allows("webhooks.manage")]

    @extend_schema(
        operation_id="webhooks_deliveries_list",
        responses=DeliveryOutputSerializer(many=True),
    )
    def get(self, request, webhook_id):
        hook = _hook_or_404(request, webhook_id)
        deliveries = hook.deliveries.order_by("-created_at", "-id")
        paginator = self.settings.DEFAULT_PAGINATION_CLASS()
        page = paginator.paginate_queryset(deliveries, request, view=self)
        return paginator.get_paginated_response(
            DeliveryOutputSerializer(page, many=True).data
        )
