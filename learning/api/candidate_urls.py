from django.urls import path

from learning.api import candidates

urlpatterns = [
    path("candidates/", candidates.CandidateListCreateApi.as_view(), name="candidates"),
    path(
        "candidates/<str:candidate_id>/",
        candidates.CandidateDetailApi.as_view(),
        name="candidate-detail",
    ),
    path(
        "candidates/<str:candidate_id>/approve/",
        candidates.CandidateApproveApi.as_view(),
        name="candidate-approve",
    ),
    path(
        "candidates/<str:candidate_id>/deny/",
        candidates.CandidateDenyApi.as_view(),
        name="candidate-deny",
    ),
    path(
        "candidates/<str:candidate_id>/findings/<str:finding_id>/dismiss/",
        candidates.FindingDismissApi.as_view(),
        name="candidate-finding-dismiss",
    ),
    path(
        "candidates/<str:candidate_id>/conflict/",
        candidates.CandidateConflictApi.as_view(),
        name="candidate-conflict",
    ),
]
