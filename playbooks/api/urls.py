from django.urls import path

from playbooks.api import views

urlpatterns = [
    path("playbooks/", views.PlaybookListCreateApi.as_view(), name="playbooks"),
    path(
        "playbooks/<slug:slug>/",
        views.PlaybookDetailApi.as_view(),
        name="playbook-detail",
    ),
    path(
        "playbooks/<slug:slug>/strategies/",
        views.PlaybookStrategiesApi.as_view(),
        name="playbook-strategies",
    ),
    path(
        "playbooks/<slug:slug>/strategies/<int:strategy_id>/stats/",
        views.PlaybookStrategyStatsApi.as_view(),
        name="playbook-strategy-stats",
    ),
    path(
        "playbooks/<slug:slug>/versions/",
        views.PlaybookVersionsApi.as_view(),
        name="playbook-versions",
    ),
    path(
        "playbooks/<slug:slug>/versions/<int:number>/",
        views.PlaybookVersionDetailApi.as_view(),
        name="playbook-version-detail",
    ),
    path(
        "playbooks/<slug:slug>/versions/<int:number>/rollback/",
        views.PlaybookRollbackApi.as_view(),
        name="playbook-rollback",
    ),
    path(
        "playbooks/<slug:slug>/quality/",
        views.PlaybookQualityApi.as_view(),
        name="playbook-quality",
    ),
    path(
        "playbooks/<slug:slug>/rollout/",
        views.PlaybookRolloutApi.as_view(),
        name="playbook-rollout",
    ),
    path(
        "playbooks/<slug:slug>/rollout/promote/",
        views.PlaybookRolloutPromoteApi.as_view(),
        name="playbook-rollout-promote",
    ),
    path(
        "playbooks/<slug:slug>/rollout/abort/",
        views.PlaybookRolloutAbortApi.as_view(),
        name="playbook-rollout-abort",
    ),
    path(
        "playbooks/<slug:slug>/context/",
        views.PlaybookContextApi.as_view(),
        name="playbook-context",
    ),
    path("skills/", views.SkillListCreateApi.as_view(), name="skills"),
    path("skills/<slug:slug>/", views.SkillDetailApi.as_view(), name="skill-detail"),
    path(
        "skills/<slug:slug>/versions/",
        views.SkillVersionsApi.as_view(),
        name="skill-versions",
    ),
    path(
        "skills/<slug:slug>/versions/<int:number>/rollback/",
        views.SkillRollbackApi.as_view(),
        name="skill-rollback",
    ),
    path(
        "candidates/<str:candidate_id>/preview/",
        views.CandidatePreviewApi.as_view(),
        name="candidate-preview",
    ),
    path(
        "candidates/<str:candidate_id>/revert/",
        views.CandidateRevertApi.as_view(),
        name="candidate-revert",
    ),
    path("memories/", views.MemoryListApi.as_view(), name="memories"),
    path("policy/", views.PolicyApi.as_view(), name="policy"),
]
