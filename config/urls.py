from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from learning.api.views import healthz
from learning.mcp.http import mcp_endpoint

api_v1 = [
    path("", include("learning.api.urls")),
    path("", include("learning.api.candidate_urls")),
    path("", include("playbooks.api.urls")),
    path("", include("learning.api.ecosystem_urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("mcp", mcp_endpoint, name="mcp"),  # MCP over streamable HTTP
    path("mcp/", mcp_endpoint),
    path("api/v1/", include(api_v1)),
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("playbooks/", include("playbooks.urls")),
    path("", include("review.urls")),
]
