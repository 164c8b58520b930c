from django.urls import path

from review.views import browse, candidate, guidance, memories, queue

app_name = "review"

urlpatterns = [
    path("", queue.queue, name="queue"),
    path("queue/", queue.queue, name="queue-page"),
    path("candidates/bulk/", queue.candidates_bulk, name="bulk"),
    path("candidates/undo/", candidate.candidates_undo, name="undo"),
    path("candidates/<int:pk>/", candidate.candidate_detail, name="candidate"),
    path("candidates/<int:pk>/approve/", candidate.candidate_approve, name="approve"),
    path("candidates/<int:pk>/deny/", candidate.candidate_deny, name="deny"),
    path(
        "candidates/<int:pk>/conflict/", candidate.candidate_conflict, name="conflict"
    ),
    path("candidates/<int:pk>/edit/", candidate.candidate_edit, name="edit"),
    path(
        "candidates/<int:pk>/findings/<str:finding_id>/dismiss/",
        candidate.candidate_finding_dismiss,
        name="finding-dismiss",
    ),
    path("candidates/<int:pk>/release/", candidate.candidate_release, name="release"),
    path("candidates/<int:pk>/reopen/", candidate.candidate_reopen, name="reopen"),
    path("candidates/<int:pk>/recall/", candidate.candidate_recall, name="recall"),
    path("runs/", browse.runs, name="runs"),
    path("runs/<uuid:pk>/", browse.run_detail, name="run"),
    path("activity/", browse.activity, name="activity"),
    path("dashboard/", browse.dashboard, name="dashboard"),
    path("memories/", memories.memory_list, name="memories"),
    path("memories/<int:memory_id>/", memories.memory_detail, name="memory"),
    path(
        "memories/<int:memory_id>/retire/",
        memories.memory_retire,
        name="memory-retire",
    ),
    path("guidance/<slug:ns>/", guidance.guidance, name="guidance"),
    path(
        "guidance/<slug:ns>/guidelines/",
        guidance.guideline_edit,
        name="guideline-edit",
    ),
    path("guidance/<slug:ns>/reasons/", guidance.reason_edit, name="reason-edit"),
    path("guidance/<slug:ns>/tags/", guidance.tag_edit, name="tag-edit"),
]
