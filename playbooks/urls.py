"""Admin pages under /playbooks/ (skills and policy sit under `_skills`/`_policy`, names
no playbook slug can take)."""

from django.urls import path

from playbooks import views

app_name = "playbooks"

urlpatterns = [
    path("", views.playbook_index, name="index"),
    path("<slug:ns>/_skills/", views.skill_index, name="skills"),
    path("<slug:ns>/_skills/<slug:slug>/", views.skill_detail, name="skill"),
    path(
        "<slug:ns>/_skills/<slug:slug>/versions/<int:number>/rollback/",
        views.skill_rollback,
        name="skill-rollback",
    ),
    path("<slug:ns>/_policy/", views.policy_edit, name="policy"),
    path(
        "<slug:ns>/_candidates/<int:candidate_id>/revert/",
        views.candidate_revert,
        name="candidate-revert",
    ),
    path("<slug:ns>/<slug:slug>/", views.playbook_detail, name="detail"),
    path("<slug:ns>/<slug:slug>/settings/", views.playbook_settings, name="settings"),
    path("<slug:ns>/<slug:slug>/strategies/", views.strategy_add, name="strategy-add"),
    path(
        "<slug:ns>/<slug:slug>/strategies/<int:strategy_id>/edit/",
        views.strategy_edit,
        name="strategy-edit",
    ),
    path(
        "<slug:ns>/<slug:slug>/strategies/<int:strategy_id>/retire/",
        views.strategy_retire,
        name="strategy-retire",
    ),
    path(
        "<slug:ns>/<slug:slug>/strategies/<int:strategy_id>/move/",
        views.strategy_move,
        name="strategy-move",
    ),
    path(
        "<slug:ns>/<slug:slug>/strategies/<int:strategy_id>/stats/",
        views.strategy_stats,
        name="strategy-stats",
    ),
    path("<slug:ns>/<slug:slug>/history/", views.playbook_history, name="history"),
    path(
        "<slug:ns>/<slug:slug>/versions/<int:number>/rollback/",
        views.playbook_rollback,
        name="rollback",
    ),
    path("<slug:ns>/<slug:slug>/quality/", views.playbook_quality, name="quality"),
    path(
        "<slug:ns>/<slug:slug>/rollout/policy/",
        views.rollout_policy,
        name="rollout-policy",
    ),
    path(
        "<slug:ns>/<slug:slug>/rollout/promote/",
        views.rollout_action,
        {"action": "promote"},
        name="rollout-promote",
    ),
    path(
        "<slug:ns>/<slug:slug>/rollout/abort/",
        views.rollout_action,
        {"action": "abort"},
        name="rollout-abort",
    ),
    path(
        "<slug:ns>/<slug:slug>/recall/",
        views.playbook_recall_preview,
        name="recall-preview",
    ),
    path("<slug:ns>/<slug:slug>/compare/", views.playbook_compare, name="compare"),
]
