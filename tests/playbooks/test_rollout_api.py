"""The rollout through the API alone, with Django-Q2's sync worker: the policy, a
canary from an approval, simulated agents recalling and posting runs, the scheduled
gate rolling a worse canary back and promoting a better one without anybody pressing
a button; admin promote/abort, roles, field-named errors, pins, query counts."""

import random
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule
from django_q.scheduler import scheduler

from playbooks.models import Playbook, RecallLog, Rollout
from review.models import AuditEvent
from tests.factories import TrajectoryFactory

pytestmark = pytest.mark.django_db

POLICY = {"share": 0.5, "min_runs_per_arm": 40, "margin": 0.05}


@pytest.fixture
def playbook(admin_client_api):
    admin_client_api.post_json(
        "/api/v1/playbooks/",
        {"slug": "roll", "name": "Rollout", "scope": "team", "mode": "propose"},
    )
    admin_client_api.post_json(
        "/api/v1/playbooks/roll/strategies/",
        {"type": "helpful", "description": "Look up the reservation first."},
    )
    return Playbook.objects.get(slug="roll")


def lesson(agent, reviewer, text, capture):
    """An agent proposes, a reviewer approves (commit callbacks run: the audit, the
    gate's schedule)."""
    with capture(execute=True):
        created = agent.post_json(
            "/api/v1/candidates/",
            {
                "kind": "strategy_helpful",
                "content": text,
                "rationale": "bar",
                "confidence": 0.9,
                "playbook": "roll",
            },
        )
        assert created.status_code == 201, created.json()
    with capture(execute=True):
        approved = reviewer.post_json(
            f"/api/v1/candidates/{created.json()['id']}/approve/", {"note": "ok"}
        )
    assert approved.status_code == 200, approved.json()


def gate_due_and_scheduler_pass():
    """What a worker does about once a minute: its scheduler runs the due schedules
    (in sync mode, inline). The gate's schedule is made due a minute ago (an older
    next_run would make the scheduler catch up minute by minute)."""
    Schedule.objects.filter(name="flywheel-quality-gate").update(
        next_run=timezone.now() - timedelta(minutes=1)
    )
    scheduler()


def simulate(agent, p_by_cohort, sessions, tag, rng):
    """Agents recall by session, succeed with their cohort's probability, and post
    their runs in batches naming the version they got."""
    counts = {"production": 0, "canary": 0}
    runs = []
    for i in range(sessions):
        sid = f"{tag}-s{i}"
        ctx = agent.get(
            "/api/v1/playbooks/roll/context/",
            {"task": "change a flight", "session_id": sid},
        ).json()
        counts[ctx["cohort"]] += 1
        ok = rng.random() < p_by_cohort[ctx["cohort"]]
        runs.append(
            {
                "external_id": f"{tag}-{i}",
                "task_description": "Change the flight of a reservation",
                "session_id": sid,
                "status": "success" if ok else "failure",
                "success_score": 1.0 if ok else 0.0,
                "playbook_versions": [f"roll@{ctx['version']}"],
                "steps": [],
            }
        )
    for j in range(0, len(runs), 50):
        response = agent.post_json("/api/v1/runs/", {"runs": runs[j : j + 50]})
        assert response.status_code in (200, 201), response.json()
    return counts


def test_policy_put_get_delete_and_errors(admin_client_api, agent_client, playbook):
    """PUT sets the policy (GET shows it, state none until a version arrives), bad
    values are 400s naming the field, agents may read but not write, DELETE removes
    it (204, also when there is none)."""
    empty = agent_client.get("/api/v1/playbooks/roll/rollout/").json()
    assert empty["state"] == "none" and empty["policy"] is None
    assert (empty["production"], empty["canary"], empty["arms"]) == (2, None, None)
    put = admin_client_api.put("/api/v1/playbooks/roll/rollout/", POLICY, format="json")
    assert put.status_code == 200, put.json()
    assert put.json()["policy"] == POLICY and put.json()["share"] == 0.5
    assert "first 40 of each" in put.json()["rule"]
    for field, value in (
        ("share", 0),
        ("share", "half"),
        ("min_runs_per_arm", 0),
        ("min_runs_per_arm", 2.5),
        ("margin", 0.7),
        ("margin", True),
    ):
        bad = admin_client_api.put(
            "/api/v1/playbooks/roll/rollout/", {**POLICY, field: value}, format="json"
        )
        assert bad.status_code == 400 and field in bad.json(), (field, bad.json())
    missing = admin_client_api.put(
        "/api/v1/playbooks/roll/rollout/", {"share": 0.5}, format="json"
    )
    assert set(missing.json()) == {"min_runs_per_arm", "margin"}
    assert (
        agent_client.put(
            "/api/v1/playbooks/roll/rollout/", POLICY, format="json"
        ).status_code
        == 403
    )
    assert admin_client_api.delete("/api/v1/playbooks/roll/rollout/").status_code == 204
    assert admin_client_api.delete("/api/v1/playbooks/roll/rollout/").status_code == 204
    assert agent_client.get("/api/v1/playbooks/roll/rollout/").json()["policy"] is None
    actions = list(
        AuditEvent.objects.filter(action__startswith="rollout_").values_list(
            "action", flat=True
        )
    )
    assert sorted(actions) == ["rollout_policy_remove", "rollout_policy_set"]
    assert (
        admin_client_api.post_json("/api/v1/playbooks/roll/rollout/promote/", {})
    ).status_code == 409


def test_a_worse_canary_is_rolled_back_and_a_better_one_promoted_by_the_schedule(
    admin_client_api,
    agent_client,
    reviewer_client,
    playbook,
    django_capture_on_commit_callbacks,
):
    """The check's scenario through the API and the sync worker: the gate's schedule
    (created when the rollout starts) reaches each verdict with nobody pressing a
    button; production stays through the rollback and moves on the promotion."""
    rng = random.Random(7)
    admin_client_api.put("/api/v1/playbooks/roll/rollout/", POLICY, format="json")
    lesson(
        agent_client,
        reviewer_client,
        "Change the flight first and check the fare rules afterwards.",
        django_capture_on_commit_callbacks,
    )
    state = agent_client.get("/api/v1/playbooks/roll/rollout/").json()
    assert (state["state"], state["production"], state["canary"]) == ("running", 2, 3)
    assert Schedule.objects.filter(name="flywheel-quality-gate").exists()

    counts = simulate(agent_client, {"production": 0.8, "canary": 0.35}, 160, "w", rng)
    assert abs(counts["canary"] / 160 - 0.5) < 0.15
    running = agent_client.get("/api/v1/playbooks/roll/rollout/").json()
    assert running["state"] == "running"  # nothing decides until the gate runs
    assert running["arms"]["canary"]["runs"] == counts["canary"]
    assert running["decision"]["outcome"] == "roll_back"
    with django_capture_on_commit_callbacks(execute=True):
        gate_due_and_scheduler_pass()  # the worker's scheduler pass; sync mode runs the task inline
    state = agent_client.get("/api/v1/playbooks/roll/rollout/").json()
    assert (state["state"], state["production"], state["canary"]) == (
        "rolled_back",
        2,
        None,
    )
    assert state["rollout"]["ended_by"] == "system:quality-gate"
    assert state["decision"]["interval"][1] < 0
    after = agent_client.get(
        "/api/v1/playbooks/roll/context/",
        {"task": "change a flight", "session_id": "z"},
    ).json()
    assert (after["version"], after["cohort"]) == (2, "production")
    assert "fare rules afterwards" not in after["context"]

    lesson(
        agent_client,
        reviewer_client,
        "Confirm the cabin class before searching for replacement flights.",
        django_capture_on_commit_callbacks,
    )
    canary = agent_client.get("/api/v1/playbooks/roll/rollout/").json()["canary"]
    assert canary == 4
    simulate(agent_client, {"production": 0.45, "canary": 0.9}, 160, "b", rng)
    with django_capture_on_commit_callbacks(execute=True):
        gate_due_and_scheduler_pass()
    state = agent_client.get("/api/v1/playbooks/roll/rollout/").json()
    assert (state["state"], state["production"], state["canary"]) == (
        "promoted",
        4,
        None,
    )
    assert RecallLog.objects.filter(cohort="canary", version=4).exists()
    actions = list(
        AuditEvent.objects.filter(action__startswith="rollout_")
        .order_by("created_at", "id")
        .values_list("action", flat=True)
    )
    assert actions == [
        "rollout_policy_set",
        "rollout_start",
        "rollout_roll_back",
        "rollout_start",
        "rollout_promote",
    ]
    history = agent_client.get("/api/v1/playbooks/roll/versions/").json()["results"]
    v2 = next(v for v in history if v["number"] == 2)
    assert (
        v2["production_until"]
        and "promoted by the quality gate" in (v2["production_left"])
    )
    v3 = next(v for v in history if v["number"] == 3)
    assert v3["flagged"] and v3["production_since"] is None


def test_admins_promote_or_abort_at_any_time_and_post_quality_evaluates(
    admin_client_api,
    agent_client,
    reviewer_client,
    playbook,
    django_capture_on_commit_callbacks,
):
    """Abort keeps production; promote moves it; both need the admin role and answer
    409 when nothing runs; POST …/quality/ evaluates at once (here: still waiting)."""
    admin_client_api.put("/api/v1/playbooks/roll/rollout/", POLICY, format="json")
    lesson(
        agent_client, reviewer_client, "Ask first.", django_capture_on_commit_callbacks
    )
    assert (
        reviewer_client.post_json("/api/v1/playbooks/roll/rollout/abort/", {})
    ).status_code == 403
    waiting = admin_client_api.post_json("/api/v1/playbooks/roll/quality/", {}).json()
    assert waiting["verdict"]["outcome"] == "waiting"
    assert waiting["rollout"]["state"] == "running"
    assert admin_client_api.delete("/api/v1/playbooks/roll/rollout/").status_code == 409
    aborted = admin_client_api.post_json(
        "/api/v1/playbooks/roll/rollout/abort/", {"note": "not today"}
    )
    assert aborted.status_code == 200
    assert (aborted.json()["state"], aborted.json()["production"]) == (
        "rolled_back",
        2,
    )
    assert "not today" in aborted.json()["rollout"]["reason"]
    lesson(
        agent_client, reviewer_client, "Ask twice.", django_capture_on_commit_callbacks
    )
    promoted = admin_client_api.post_json("/api/v1/playbooks/roll/rollout/promote/")
    assert (promoted.json()["state"], promoted.json()["production"]) == (
        "promoted",
        4,
    )
    assert (
        admin_client_api.post_json("/api/v1/playbooks/roll/rollout/abort/", {})
    ).status_code == 409
    none = admin_client_api.post_json("/api/v1/playbooks/roll/quality/", {}).json()
    assert none["verdict"] is None
    detail = agent_client.get("/api/v1/playbooks/roll/").json()
    assert detail["production_version"] == detail["version"] == 4
    assert detail["canary_version"] is None


def test_recall_pins_a_version_and_names_a_missing_one(agent_client, playbook):
    pinned = agent_client.get(
        "/api/v1/playbooks/roll/context/", {"task": "reservation", "version": 1}
    )
    assert pinned.status_code == 200
    assert (pinned.json()["version"], pinned.json()["cohort"]) == (1, "pinned")
    assert pinned.json()["items"] == []
    missing = agent_client.get(
        "/api/v1/playbooks/roll/context/", {"task": "x", "version": 9}
    )
    assert missing.status_code == 404 and "version" in missing.json()
    bad = agent_client.get(
        "/api/v1/playbooks/roll/context/", {"task": "x", "version": "a"}
    )
    assert bad.status_code == 400 and "version" in bad.json()


def test_other_namespaces_see_nothing(other_client, playbook):
    assert other_client.get("/api/v1/playbooks/roll/rollout/").status_code == 404
    assert (
        other_client.post_json("/api/v1/playbooks/roll/rollout/promote/", {})
    ).status_code == 404


def test_rollout_get_costs_the_same_queries_for_ten_runs_as_for_three_hundred(
    admin_client_api,
    agent_client,
    reviewer_client,
    playbook,
    django_assert_num_queries,
    django_capture_on_commit_callbacks,
):
    """GET …/rollout/ while a rollout runs: token, playbook, policy, latest rollout,
    the cohorts' runs (one query however many)."""
    admin_client_api.put("/api/v1/playbooks/roll/rollout/", POLICY, format="json")
    lesson(
        agent_client, reviewer_client, "Ask first.", django_capture_on_commit_callbacks
    )
    rollout = Rollout.objects.get()

    def runs(n, start):
        for i in range(n):
            TrajectoryFactory(
                namespace=playbook.namespace,
                playbook_versions=[f"roll@{rollout.canary if i % 2 else 2}"],
                external_id=f"q{start + i}",
            )

    runs(10, 0)
    agent_client.get("/api/v1/playbooks/roll/rollout/")
    with django_assert_num_queries(5):
        few = agent_client.get("/api/v1/playbooks/roll/rollout/").json()
    runs(290, 100)
    with django_assert_num_queries(5):
        many = agent_client.get("/api/v1/playbooks/roll/rollout/").json()
    assert few["arms"]["canary"]["runs"] == 5
    assert many["arms"]["canary"]["runs"] == 150
