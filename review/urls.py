from django.urls import path

from review import views

app_name = "review"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("queue/", views.queue, name="queue-page"),
    path("candidates/bulk/", views.candidates_bulk, name="bulk"),
    path("candidates/<int:pk>/", views.candidate_detail, name="candidate"),
    path("candidates/<int:pk>/approve/", views.candidate_approve, name="approve"),
    path("candidates/<int:pk>/deny/", views.candidate_deny, name="deny"),
    path("candidates/<int:pk>/conflict/", views.candidate_conflict, name="conflict"),
    path("candidates/<int:pk>/edit/", views.candidate_edit, name="edit"),
    path("candidates/<int:pk>/release/", views.candidate_release, name="release"),
    path("runs/", views.runs, name="runs"),
    path("runs/<uuid:pk>/", views.run_detail, name="run"),
    path("activity/", views.activity, name="activity"),
    path("dashboard/", views.dashboard, name="dashboard"),
]
