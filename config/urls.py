from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from learning.api.views import healthz
from learning.mcp.http import mcp_endpoint
from review.login import ThrottledAdminAuthenticationForm, ThrottledLoginView

# The admin site's login shares the console's throttle (review/login.py).
admin.site.login_form = ThrottledAdminAuthenticationForm

api_v1 = [
    path("", include("learning.api.urls")),
    path("", include("learning.api.candidate_urls")),
    path("", include("playbooks.api.urls")),
    path("", include("learning.api.ecosystem_urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file of its own, so the
    # page needs no inline script under the Content-Security-Policy.
    path(
        "docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"
    ),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("mcp", mcp_endpoint, name="mcp"),  # MCP over streamable HTTP
    path("mcp/", mcp_endpoint),
    path("api/v1/", include(api_v1)),
    path("admin/", admin.site.urls),
    path("login/", ThrottledLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("playbooks/", include("playbooks.urls")),
    path("", include("review.urls")),
]
