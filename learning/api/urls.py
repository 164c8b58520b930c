from django.urls import path

from learning.api import views

urlpatterns = [
    path("runs/", views.RunListCreateApi.as_view(), name="runs"),
    path("runs/<str:run_id>/", views.RunDetailApi.as_view(), name="run-detail"),
    path("runs/<str:run_id>/steps/", views.RunStepsApi.as_view(), name="run-steps"),
    path(
        "runs/<str:run_id>/complete/",
        views.RunCompleteApi.as_view(),
        name="run-complete",
    ),
    path(
        "runs/<str:run_id>/feedback/",
        views.RunFeedbackApi.as_view(),
        name="run-feedback",
    ),
]
