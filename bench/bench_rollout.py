"""The rollout rule, simulated: how often it promotes, rolls back or stays undecided when
the canary's true success rate differs from production's by 0, ±5, ±10 and ±20 points,
and how many runs it needs.

Two paths, the same rule (`playbooks.quality.verdict_rule` + `horizon_analysis`):

- *in-process*: 200 rollouts per effect (1,400 in all), agents assigned to the canary
  with probability `share`, each run a Bernoulli draw, the gate looking after every 10
  runs (far more often than once a minute: the rule must stay honest however often it
  looks), up to 4x the minimum per cohort. Also 2,000 rollouts at the two boundary
  effects (0 and -margin), where the wrong-decision rate is largest, for a tighter
  estimate.
- *through the API*: a smaller sample (the API path costs a recall and a run post per
  simulated session): agents recall `GET …/context/?session_id=…` (the cohort comes
  from the session hash), post their runs in batches of 20 naming the version they got,
  and the gate is asked after each batch (`POST …/quality/`), in-process through DRF's
  test client against PostgreSQL. Each API rollout is then replayed through the
  in-process rule on the stored runs in the order the gate saw them: the decisions and
  run counts must be identical.

Wrong decisions: promoting a canary that is worse (effect < 0), or rolling back one
that is not worse (effect >= 0). Goals: wrong <= 5 % at every effect; a 10-point
difference decided at the minimum (the fixed horizon) in >= 80 % of rollouts.

`python bench/bench_rollout.py [--rollouts 200] [--api-per-effect 2] [--baseline 0.5]`
"""

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import django_setup, report  # noqa: E402

EFFECTS = (-0.20, -0.10, -0.05, 0.0, 0.05, 0.10, 0.20)
SHARE, MARGIN = 0.5, 0.05
MIN_RUNS = 450  # per cohort: sized for >= 80 % at ±10 points from a 50 % baseline
CAP = 4  # stop undecided rollouts at this many times the minimum per cohort
LOOK_EVERY = 10  # runs between looks, in-process
API_MIN_RUNS, API_CAP, API_BATCH = MIN_RUNS, 2, 20


def wrong(effect: float, outcome: str) -> bool:
    return (effect < 0 and outcome == "promote") or (
        effect >= 0 and outcome == "roll_back"
    )


class Replay:
    """The gate's state over a stream of (cohort, success) runs: the counts, the first
    min_runs of each cohort (the horizon, analysed once), and the rule at each look."""

    def __init__(self, min_runs: int):
        from playbooks.quality import Arm

        self.min_runs = min_runs
        self.arms = {"canary": Arm(), "production": Arm()}
        self.first = {"canary": Arm(), "production": Arm()}
        self.horizon = None

    def add(self, cohort: str, ok: bool) -> None:
        self.arms[cohort].add(ok, 1.0 if ok else 0.0)
        if self.first[cohort].runs < self.min_runs:
            self.first[cohort].add(ok, 1.0 if ok else 0.0)

    def look(self) -> str:
        from playbooks.quality import horizon_analysis, verdict_rule

        if self.horizon is None and all(
            a.runs >= self.min_runs for a in self.first.values()
        ):
            self.horizon = horizon_analysis(
                canary=self.first["canary"],
                production=self.first["production"],
                margin=MARGIN,
            )
        return verdict_rule(
            canary=self.arms["canary"],
            production=self.arms["production"],
            horizon=self.horizon,
            min_runs_per_arm=self.min_runs,
            margin=MARGIN,
            share=SHARE,
        )["outcome"]

    @property
    def smaller(self) -> int:
        return min(a.runs for a in self.arms.values())


def simulate(rng: random.Random, baseline: float, effect: float) -> dict:
    state = Replay(MIN_RUNS)
    while True:
        for _ in range(LOOK_EVERY):
            cohort = "canary" if rng.random() < SHARE else "production"
            p = baseline + effect if cohort == "canary" else baseline
            state.add(cohort, rng.random() < p)
        outcome = state.look()
        if outcome in ("promote", "roll_back"):
            break
        if state.smaller >= CAP * MIN_RUNS:
            outcome = "undecided"
            break
    return {
        "outcome": outcome,
        "at_horizon": outcome != "undecided"
        and state.horizon is not None
        and state.horizon["outcome"] == outcome,
        "runs": sum(a.runs for a in state.arms.values()),
        "smaller": state.smaller,
    }


def summarise(effect: float, results: list[dict]) -> dict:
    n = len(results)
    decided = [r for r in results if r["outcome"] != "undecided"]
    count = {
        k: sum(r["outcome"] == k for r in results)
        for k in ("promote", "roll_back", "undecided")
    }
    return {
        "effect": effect,
        "rollouts": n,
        "promote": count["promote"] / n,
        "roll_back": count["roll_back"] / n,
        "undecided": count["undecided"] / n,
        "wrong": sum(wrong(effect, r["outcome"]) for r in results) / n,
        "at_horizon": sum(r["at_horizon"] for r in results) / n,
        "median_runs": statistics.median(r["runs"] for r in decided)
        if decided
        else None,
        "median_per_cohort": statistics.median(r["smaller"] for r in decided)
        if decided
        else None,
    }


# --- through the API -----------------------------------------------------------------


def api_rollout(clients, slug: str, rng: random.Random, baseline: float, effect: float):
    """One rollout through the HTTP API; returns (outcome, runs, the stored runs in
    the order the gate saw them, the looks' run counts)."""
    admin, agent = clients
    assert (
        admin.post(
            "/api/v1/playbooks/",
            {"slug": slug, "name": slug, "scope": "team", "mode": "propose"},
            format="json",
        ).status_code
        == 201
    )
    admin.post(
        f"/api/v1/playbooks/{slug}/strategies/",
        {"type": "helpful", "description": "Look up the reservation first."},
        format="json",
    )
    policy = {"share": SHARE, "min_runs_per_arm": API_MIN_RUNS, "margin": MARGIN}
    assert (
        admin.put(
            f"/api/v1/playbooks/{slug}/rollout/", policy, format="json"
        ).status_code
        == 200
    )
    admin.post(
        f"/api/v1/playbooks/{slug}/strategies/",
        {"type": "helpful", "description": "Confirm the cabin class first."},
        format="json",
    )  # the canary
    looks, posted, outcome, smaller = [], 0, "undecided", 0
    while True:
        batch = []
        for _ in range(API_BATCH):
            sid = f"{slug}-s{posted + len(batch)}"
            ctx = agent.get(
                f"/api/v1/playbooks/{slug}/context/",
                {"task": "change a flight", "session_id": sid},
            ).json()
            p = baseline + effect if ctx["cohort"] == "canary" else baseline
            ok = rng.random() < p
            batch.append(
                {
                    "external_id": sid,
                    "task_description": "Change the flight of a reservation",
                    "session_id": sid,
                    "status": "success" if ok else "failure",
                    "success_score": 1.0 if ok else 0.0,
                    "playbook_versions": [f"{slug}@{ctx['version']}"],
                }
            )
        assert agent.post(
            "/api/v1/runs/", {"runs": batch}, format="json"
        ).status_code in (200, 201)
        posted += len(batch)
        looks.append(posted)
        body = admin.post(
            f"/api/v1/playbooks/{slug}/quality/", {}, format="json"
        ).json()
        state = body["rollout"]
        arms = (body["verdict"] or {}).get("arms") or {}
        smaller = min(arms[c]["runs"] for c in ("canary", "production")) if arms else 0
        if state["state"] in ("promoted", "rolled_back"):
            outcome = {"promoted": "promote", "rolled_back": "roll_back"}[
                state["state"]
            ]
            break
        if smaller >= API_CAP * API_MIN_RUNS:
            break
    return outcome, posted, looks


def api_replay(slug: str, looks: list[int]) -> tuple[str, bool]:
    """The in-process rule over the runs the API stored, in the gate's order (arrival:
    created_at, id), looking at the same run counts."""
    from learning.models import Trajectory
    from playbooks.models import Rollout

    rollout = Rollout.objects.get(playbook__slug=slug)
    tags = {
        f"{slug}@{rollout.canary}": "canary",
        f"{slug}@{rollout.production}": "production",
    }
    rows = list(
        Trajectory.objects.filter(external_id__startswith=f"{slug}-s")
        .order_by("created_at", "id")
        .values_list("playbook_versions", "status")
    )
    state = Replay(API_MIN_RUNS)
    seen = 0
    for count in looks:
        for used, status in rows[seen:count]:
            state.add(tags[used[0]], status == "success")
        seen = count
        outcome = state.look()
        if outcome in ("promote", "roll_back"):
            return outcome, state.horizon["outcome"] == outcome
        if state.smaller >= API_CAP * API_MIN_RUNS:
            break
    return "undecided", False


def api_sample(per_effect: int, baseline: float, rng: random.Random) -> dict:
    from rest_framework.test import APIClient

    from learning.services.tokens import token_create

    clients = []
    for role in ("admin", "agent"):
        _token, raw = token_create(
            name=f"bench-{role}", namespace_slug="bench-rollout", role=role
        )
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        clients.append(client)
    out, agree, requests, started = {}, 0, 0, time.perf_counter()
    for effect in EFFECTS:
        results = []
        for k in range(per_effect):
            slug = f"r{int(round(effect * 100)) + 100}-{k}"
            outcome, posted, looks = api_rollout(clients, slug, rng, baseline, effect)
            requests += posted
            replayed, at_horizon = api_replay(slug, looks)
            agree += replayed == outcome
            results.append(
                {
                    "outcome": outcome,
                    "at_horizon": at_horizon,
                    "runs": posted,
                    "smaller": 0,
                }
            )
        out[effect] = summarise(effect, results)
    elapsed = time.perf_counter() - started
    return {
        "by_effect": out,
        "agree": agree,
        "rollouts": per_effect * len(EFFECTS),
        "sessions": requests,
        "ms_per_session": round(elapsed * 1000 / max(requests, 1), 2),
    }


def table(rows: dict, title: str) -> str:
    lines = [
        title,
        "| true effect | promoted | rolled back | undecided | wrong | decided at the minimum | median runs (both cohorts) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for effect, s in rows.items():
        median = "–" if s["median_runs"] is None else f"{s['median_runs']:.0f}"
        lines.append(
            f"| {effect * 100:+.0f} | {s['promote']:.1%} | {s['roll_back']:.1%} | "
            f"{s['undecided']:.1%} | {s['wrong']:.1%} | {s['at_horizon']:.1%} | {median} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rollouts", type=int, default=200)
    parser.add_argument("--boundary-rollouts", type=int, default=2000)
    parser.add_argument("--api-per-effect", type=int, default=2)
    parser.add_argument("--baseline", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    import os

    os.environ.setdefault("FLYWHEEL_INGEST_RATE", "off")
    django_setup()
    import logging

    logging.getLogger("django-q").setLevel(logging.WARNING)  # one line per enqueue
    rng = random.Random(args.seed)

    started = time.perf_counter()
    sim = {
        effect: summarise(
            effect, [simulate(rng, args.baseline, effect) for _ in range(args.rollouts)]
        )
        for effect in EFFECTS
    }
    boundary = {
        effect: summarise(
            effect,
            [
                simulate(rng, args.baseline, effect)
                for _ in range(args.boundary_rollouts)
            ],
        )
        for effect in (0.0, -MARGIN)
    }
    sim_s = time.perf_counter() - started
    api = (
        api_sample(args.api_per_effect, args.baseline, rng)
        if args.api_per_effect
        else None
    )

    print(
        f"policy: share {SHARE}, min_runs_per_arm {MIN_RUNS}, margin {MARGIN}; baseline "
        f"success {args.baseline:.0%}; a look every {LOOK_EVERY} runs; undecided at "
        f"{CAP}x the minimum per cohort ({sim_s:.0f} s)",
    )
    print(
        table(sim, f"\nIn-process, {args.rollouts} rollouts per effect:"),
    )
    print(
        table(boundary, f"\nBoundary effects, {args.boundary_rollouts} rollouts each:"),
    )
    if api:
        print(
            table(
                api["by_effect"],
                f"\nThrough the API (min_runs_per_arm {API_MIN_RUNS}, undecided at "
                f"{API_CAP}x), {args.api_per_effect} per effect; decisions identical "
                f"to the in-process rule on the same runs: {api['agree']}/{api['rollouts']}; "
                f"{api['ms_per_session']} ms per session (recall + its share of a batch "
                f"post and a gate look):",
            ),
            file=sys.stderr,
        )
    results = {
        "rollout_wrong_max": round(max(s["wrong"] for s in sim.values()), 3),
        "rollout_wrong_boundary_max": round(
            max(s["wrong"] for s in boundary.values()), 4
        ),
        "rollout_decided_at_min_10pt": round(
            min(sim[e]["at_horizon"] for e in (-0.10, 0.10)), 3
        ),
        "rollout_median_runs_10pt": max(sim[e]["median_runs"] for e in (-0.10, 0.10)),
    }
    if api:
        results["rollout_api_agree"] = f"{api['agree']}/{api['rollouts']}"
        results["rollout_api_ms_per_session"] = api["ms_per_session"]
    report(results)


if __name__ == "__main__":
    main()
