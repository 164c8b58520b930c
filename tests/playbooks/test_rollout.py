"""Staged rollout in the services: labels (production at once without a policy, a canary
with one), sticky cohorts, recall serving each cohort its version's content, what
happens to changes made while a canary runs (they fold into a new canary), promote,
abort and the gate's verdict on runs."""

import pytest

from learning.models import Trajectory
from playbooks import quality, recall, rollout
from playbooks.apply import candidate_revert
from playbooks.curation import playbook_curate
from playbooks.models import (
    Playbook,
    PlaybookVersion,
    RecallLog,
    Rollout,
    RolloutState,
    Strategy,
)
from playbooks.services import strategy_edit
from playbooks.versions import PlaybookError, playbook_rollback
from review.models import AuditEvent
from review.services import Actor, candidate_approve
from tests.factories import (
    CandidateFactory,
    NamespaceFactory,
    TrajectoryFactory,
    make_playbook,
    make_strategy,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def playbook():
    pb = make_playbook(NamespaceFactory(slug="acme"), "airline")
    make_strategy(pb, "Look up the reservation before changing a flight.")
    make_strategy(pb, "Confirm the cabin class before searching for flights.")
    pb.refresh_from_db()
    return pb


def approve(playbook, content):
    candidate = CandidateFactory(
        namespace=playbook.namespace, playbook=playbook, content=content
    )
    candidate_approve(
        namespace=playbook.namespace, candidate_id=candidate.pk, actor=Actor("rita")
    )
    playbook.refresh_from_db()
    return candidate


def with_policy(playbook, share=0.5, min_runs=40, margin=0.05):
    rollout.rollout_policy_set(
        playbook=playbook,
        share=share,
        min_runs_per_arm=min_runs,
        margin=margin,
        actor="admin",
    )


def sessions_by_cohort(playbook, count=400, prefix="s"):
    out = {"production": [], "canary": []}
    for i in range(count):
        result = recall.playbook_recall(
            playbook=playbook, task="change a flight", session_id=f"{prefix}{i}"
        )
        out[result.cohort].append((f"{prefix}{i}", result))
    return out


def sessions_per_arm(playbook, per_arm: int, prefix="s"):
    """Exactly `per_arm` sessions of each cohort. A cohort is a hash of the session
    and the rollout's salt (new for each rollout), so a fixed number of sessions
    splits differently from run to run (80 at a share of 0.5 gave fewer than 30
    canaries about once in 100): a test whose verdict depends on the counts takes
    sessions until both arms are full."""
    out = {"production": [], "canary": []}
    for i in range(40 * per_arm):
        if min(len(arm) for arm in out.values()) >= per_arm:
            break
        result = recall.playbook_recall(
            playbook=playbook, task="change a flight", session_id=f"{prefix}{i}"
        )
        if len(out[result.cohort]) < per_arm:
            out[result.cohort].append((f"{prefix}{i}", result))
    assert all(len(arm) == per_arm for arm in out.values()), out
    return out


def post_runs(playbook, sessions, version, success_rate, start=0):
    """Finished runs naming slug@version; `success_rate` of them succeed, spread
    evenly in arrival order."""
    n = len(sessions)
    Trajectory.objects.bulk_create(
        [
            TrajectoryFactory.build(
                namespace=playbook.namespace,
                session_id=sid,
                playbook_versions=[f"{playbook.slug}@{version}", "other@1"],
                status="success" if ok else "failure",
                success_score=1.0 if ok else 0.0,
                external_id=f"{sid}-{start + i}",
            )
            for i, sid in enumerate(sessions)
            for ok in [int((i + 1) * success_rate) > int(i * success_rate)]
        ]
    )
    return n


def test_without_a_policy_a_new_version_is_production_at_once(playbook):
    """Today's behaviour: every approval is what recall serves, no rollout."""
    approve(playbook, "Quote the fare difference before rebooking.")
    assert playbook.current_version == playbook.production_version == 4
    assert playbook.canary_version is None
    result = recall.playbook_recall(playbook=playbook, task="rebook", session_id="x")
    assert (result.version, result.cohort) == (4, "production")
    assert not Rollout.objects.exists()
    v3 = PlaybookVersion.objects.get(playbook=playbook, number=3)
    assert v3.production_until is not None
    assert v3.production_left == "replaced by version 4 (no rollout policy)"


def test_with_a_policy_a_new_version_is_the_canary_and_production_stays(playbook):
    """The approved lesson reaches only the canary cohort; production's cohort gets
    the content it had, and both are logged with their cohort."""
    with_policy(playbook)
    approve(playbook, "Quote the fare difference before you change a flight.")
    assert (playbook.production_version, playbook.canary_version) == (3, 4)
    running = Rollout.objects.get(state=RolloutState.RUNNING)
    assert (running.canary, running.production, running.share) == (4, 3, 0.5)
    cohorts = sessions_by_cohort(playbook, 200)
    for _, result in cohorts["canary"]:
        assert result.version == 4
        assert any("fare difference" in i["description"] for i in result.items)
    for _, result in cohorts["production"]:
        assert result.version == 3
        assert not any("fare difference" in i["description"] for i in result.items)
        assert "(version 3)" in result.context
    assert cohorts["canary"] and cohorts["production"]
    logged = dict(RecallLog.objects.values_list("session_id", "cohort"))
    assert logged[cohorts["canary"][0][0]] == "canary"
    assert logged[cohorts["production"][0][0]] == "production"
    assert set(RecallLog.objects.values_list("cohort", "version")) == {
        ("canary", 4),
        ("production", 3),
    }
    assert AuditEvent.objects.filter(action="rollout_start").count() == 1


def test_cohorts_split_by_share_within_five_percent_and_stick():
    """2,000 sessions at share 0.5 and 0.2 land within ±5 % of the share; the same
    session always gets the same cohort; another salt reshuffles; the user and then
    the run stand in for a missing session."""
    units = [quality.rollout_unit(session_id=f"sess-{i}") for i in range(2000)]
    for share in (0.5, 0.2):
        first = [quality.rollout_cohort(salt="a", share=share, unit=u) for u in units]
        again = [quality.rollout_cohort(salt="a", share=share, unit=u) for u in units]
        assert first == again
        assert abs(first.count("canary") / 2000 - share) <= 0.05
    other = [quality.rollout_cohort(salt="b", share=0.5, unit=u) for u in units]
    same_as_a = sum(
        x == y
        for x, y in zip(
            other, [quality.rollout_cohort(salt="a", share=0.5, unit=u) for u in units]
        )
    )
    assert 800 < same_as_a < 1200  # independent halves agree about half the time
    assert quality.rollout_unit(session_id="", user_id="u1", run="r") == "user:u1"
    assert quality.rollout_unit(run="r9") == "run:r9"
    assert quality.rollout_unit() == ""


def test_recall_cohorts_are_sticky_for_the_rollouts_life(playbook):
    """A session recalls again and again and keeps its version; users and runs are
    sticky too when there is no session."""
    with_policy(playbook, share=0.3)
    approve(playbook, "Quote the fare difference before you change a flight.")
    first = sessions_by_cohort(playbook, 300)
    share = len(first["canary"]) / 300
    assert abs(share - 0.3) < 0.1
    for cohort, items in first.items():
        for sid, _ in items[:20]:
            again = recall.playbook_recall(
                playbook=playbook, task="anything", session_id=sid
            )
            assert again.cohort == cohort
    by_user = {
        recall.playbook_recall(playbook=playbook, task="x", user_id="mia").cohort
        for _ in range(5)
    }
    by_run = {
        recall.playbook_recall(playbook=playbook, task="x", run_external_id="r1").cohort
        for _ in range(5)
    }
    assert len(by_user) == 1 and len(by_run) == 1


def test_a_pinned_version_is_served_as_it_was(playbook):
    """?version=n serves version n's content ranked as it was when it was live, even
    after strategies were edited, retired, replaced and reinforced since."""
    make_strategy(playbook, "Offer a travel voucher when the flight is cancelled.")
    playbook.refresh_from_db()
    task = "change the flight and offer a voucher for the cabin"
    before = recall.playbook_recall(playbook=playbook, task=task)
    pinned_number = playbook.current_version
    strategies = list(Strategy.objects.filter(playbook=playbook, active=True))
    strategy_edit(
        playbook=playbook,
        strategy_id=strategies[0].pk,
        actor="admin",
        description="Look up the booking first.",
    )
    approve(playbook, "Ask whether the passenger prefers a voucher or a refund.")
    from playbooks.services import strategy_retire

    strategy_retire(playbook=playbook, strategy_id=strategies[1].pk, actor="admin")
    playbook.refresh_from_db()
    assert playbook.current_version == pinned_number + 3
    pinned = recall.playbook_recall(playbook=playbook, task=task, version=pinned_number)
    assert pinned.version == pinned_number and pinned.cohort == "pinned"
    assert [(i["key"], i["description"]) for i in pinned.items] == [
        (i["key"], i["description"]) for i in before.items
    ]
    assert [i["score"] for i in pinned.items] == pytest.approx(
        [i["score"] for i in before.items], abs=0.02
    )
    with pytest.raises(recall.UnknownVersion):
        recall.playbook_recall(playbook=playbook, task=task, version=99)


def test_a_change_while_a_canary_runs_folds_into_a_new_canary(playbook):
    """An approval during a rollout supersedes the running one: the new version (old
    canary + the change) is the canary, production is unchanged, the experiment
    restarts from now with the same cohort salt; a hand edit does the same."""
    with_policy(playbook)
    approve(playbook, "Quote the fare difference before you change a flight.")
    first = Rollout.objects.get(state=RolloutState.RUNNING)
    approve(playbook, "Ask whether the passenger prefers a voucher.")
    assert (playbook.production_version, playbook.canary_version) == (3, 5)
    first.refresh_from_db()
    assert first.state == RolloutState.SUPERSEDED and "folded in" in first.reason
    second = Rollout.objects.get(state=RolloutState.RUNNING)
    assert (second.canary, second.production) == (5, 3)
    assert second.salt == first.salt and second.started_at >= first.ended_at
    content = {
        i["description"]
        for i in PlaybookVersion.objects.get(playbook=playbook, number=5).content
    }
    assert {
        "Quote the fare difference before you change a flight.",
        "Ask whether the passenger prefers a voucher.",
    } <= content
    strategy = Strategy.objects.filter(playbook=playbook, active=True).first()
    strategy_edit(
        playbook=playbook, strategy_id=strategy.pk, actor="admin", confidence=0.9
    )
    playbook.refresh_from_db()
    assert (playbook.production_version, playbook.canary_version) == (3, 6)
    assert Rollout.objects.filter(state=RolloutState.SUPERSEDED).count() == 2
    # runs of the superseded canary do not count for the new one
    post_runs(playbook, [f"x{i}" for i in range(50)], 5, 0.9)
    status = rollout.rollout_status(playbook=playbook)
    assert status["arms"]["canary"]["runs"] == 0 and status["canary"] == 6


def test_abort_restores_production_content_and_the_next_change_starts_from_it(
    playbook,
):
    """Aborting drops the canary: the live strategies are production's again, and the
    next approval's diff is against production (the dropped lesson is not in it)."""
    with_policy(playbook)
    approve(playbook, "Change the flight first and check the fare rules afterwards.")
    done = rollout.rollout_abort(playbook=playbook, actor="admin", note="hunch")
    playbook.refresh_from_db()
    assert done.state == RolloutState.ROLLED_BACK and "hunch" in done.reason
    assert playbook.current_version == playbook.production_version == 3
    live = set(
        Strategy.objects.filter(playbook=playbook, active=True).values_list(
            "description", flat=True
        )
    )
    assert "Change the flight first and check the fare rules afterwards." not in live
    approve(playbook, "Confirm the new date with the passenger.")
    v5 = PlaybookVersion.objects.get(playbook=playbook, number=5)
    assert [i["description"] for i in v5.diff["added"]] == [
        "Confirm the new date with the passenger."
    ]
    assert v5.diff["removed"] == [] and playbook.canary_version == 5
    assert not PlaybookVersion.objects.get(playbook=playbook, number=4).flagged
    with pytest.raises(PlaybookError):
        rollout.rollout_promote(playbook=playbook, actor="a", expected=-1)


def test_promote_moves_production_and_records_why_the_old_one_left(playbook):
    with_policy(playbook)
    approve(playbook, "Quote the fare difference before you change a flight.")
    rollout.rollout_promote(playbook=playbook, actor="admin", note="looks fine")
    playbook.refresh_from_db()
    assert playbook.production_version == playbook.current_version == 4
    v3 = PlaybookVersion.objects.get(playbook=playbook, number=3)
    assert v3.production_left == (
        "replaced by version 4 (promoted by admin: looks fine)"
    )
    assert (
        PlaybookVersion.objects.get(playbook=playbook, number=4).production_since
        is not None
    )
    result = recall.playbook_recall(playbook=playbook, task="fare", session_id="z")
    assert (result.version, result.cohort) == (4, "production")
    with pytest.raises(PlaybookError, match="No rollout is running"):
        rollout.rollout_abort(playbook=playbook, actor="admin")


def test_a_rollback_or_a_revert_to_production_ends_the_rollout(playbook):
    """Rolling back by hand is production at once (the canary is dropped); reverting
    the canary's only change leaves production's content: production at once too."""
    with_policy(playbook)
    approve(playbook, "Quote the fare difference before you change a flight.")
    version = playbook_rollback(playbook=playbook, number=2, actor="admin")
    playbook.refresh_from_db()
    assert playbook.production_version == playbook.current_version == version.number
    assert Rollout.objects.get().state == RolloutState.ROLLED_BACK
    assert "restores version 2" in Rollout.objects.get().reason

    candidate = approve(playbook, "Ask whether the passenger prefers a voucher.")
    assert playbook.canary_version == version.number + 1
    candidate_revert(candidate=candidate, actor="rita")
    playbook.refresh_from_db()
    assert playbook.canary_version is None
    assert playbook.production_version == version.number + 2
    last = Rollout.objects.order_by("-id").first()
    assert last.state == RolloutState.ROLLED_BACK
    assert "production's content" in last.reason


def test_policy_rules(playbook):
    """Bad values name the field; removing the policy while a canary runs is refused;
    a running rollout keeps the parameters it started with."""
    for field, value in (("share", 0), ("share", 1.5), ("margin", 0.9)):
        args = {"share": 0.5, "min_runs_per_arm": 10, "margin": 0.05, field: value}
        with pytest.raises(PlaybookError) as info:
            rollout.rollout_policy_set(playbook=playbook, actor="a", **args)
        assert info.value.field == field
    with pytest.raises(PlaybookError) as info:
        rollout.rollout_policy_set(
            playbook=playbook, actor="a", share=0.5, min_runs_per_arm=2.5, margin=0
        )
    assert info.value.field == "min_runs_per_arm"
    with_policy(playbook, share=0.5)
    approve(playbook, "Quote the fare difference before you change a flight.")
    with_policy(playbook, share=0.1)
    assert Rollout.objects.get(state=RolloutState.RUNNING).share == 0.5
    with pytest.raises(PlaybookError) as info:
        rollout.rollout_policy_remove(playbook=playbook, actor="a")
    assert info.value.code == "conflict"
    rollout.rollout_promote(playbook=playbook, actor="a")
    rollout.rollout_policy_remove(playbook=playbook, actor="a")
    approve(playbook, "Ask whether the passenger prefers a voucher.")
    assert playbook.canary_version is None and playbook.production_version == 5


def test_curation_waits_while_a_canary_runs(playbook):
    with_policy(playbook)
    make_strategy(playbook, "Look up the reservation before changing a flight!")
    playbook.refresh_from_db()
    report = playbook_curate(playbook=playbook)
    assert report["version"] is None and report["skipped"] == "a rollout is running"


def test_the_gate_rolls_back_a_worse_canary_on_the_cohorts_runs(playbook):
    """Runs of both cohorts since the rollout started: 80 % vs 35 % at the minimum is
    rolled back by the gate, the canary flagged, production unchanged; runs from
    before the rollout and runs naming both versions do not count."""
    with_policy(playbook, min_runs=40)
    post_runs(playbook, [f"old{i}" for i in range(100)], 3, 0.1)  # before: ignored
    approve(playbook, "Change the flight first and check the fare rules afterwards.")
    cohorts = sessions_per_arm(playbook, 60)
    post_runs(playbook, [s for s, _ in cohorts["production"]], 3, 0.8)
    post_runs(playbook, [s for s, _ in cohorts["canary"]], 4, 0.35)
    TrajectoryFactory(
        namespace=playbook.namespace, playbook_versions=["airline@3", "airline@4"]
    )
    verdict = rollout.rollout_gate_evaluate(playbook=playbook)
    assert verdict["outcome"] == "roll_back" and verdict["acted"]
    assert verdict["arms"]["production"]["runs"] == len(cohorts["production"])
    assert verdict["arms"]["canary"]["runs"] == len(cohorts["canary"])
    playbook.refresh_from_db()
    assert playbook.production_version == playbook.current_version == 3
    v4 = PlaybookVersion.objects.get(playbook=playbook, number=4)
    assert v4.flagged and "rolled back by the quality gate" in v4.flag_reason
    assert v4.quality["state"] == "rolled_back"
    ended = Rollout.objects.get()
    assert ended.horizon["outcome"] == "roll_back"
    assert ended.ended_by == quality.GATE_ACTOR
    assert rollout.rollout_gate_evaluate(playbook=playbook) is None


def test_the_horizon_is_analysed_once_whatever_arrives_later(playbook):
    """The first evaluation at the minimum stores the horizon; later runs change the
    sequential figures but never the stored horizon."""
    with_policy(playbook, min_runs=30, margin=0.05)
    approve(playbook, "Quote the fare difference before you change a flight.")
    cohorts = sessions_per_arm(playbook, 40)
    post_runs(playbook, [s for s, _ in cohorts["production"]], 3, 0.7)
    post_runs(playbook, [s for s, _ in cohorts["canary"]], 4, 0.6)
    first = rollout.rollout_gate_evaluate(playbook=playbook)
    assert first["outcome"] == "continue" and first["horizon"]["outcome"] == "continue"
    stored = Rollout.objects.get().horizon
    post_runs(playbook, [f"late{i}" for i in range(300)], 4, 0.0, start=1000)
    again = rollout.rollout_gate_evaluate(playbook=playbook)
    assert Rollout.objects.get().horizon == stored
    assert again["stage"] == "sequential" and again["outcome"] == "roll_back"
    assert Playbook.objects.get(pk=playbook.pk).canary_version is None


def lesson_playbook(fillers=25):
    """A playbook of lesson-shaped strategies: `fillers` confident ones about meals,
    one about wheelchairs (its situation in `when`) and a low-confidence one that only
    its learned situations tie to flying to Seattle on certificates (so no fill of the
    most confident lessons ever brings it in: only the full-text match does)."""
    pb = make_playbook(NamespaceFactory(slug="acme"), "airline")
    for k in range(fillers):
        make_strategy(
            pb,
            "",
            polarity="do",
            when=f"the route lasts over {k + 5} hours",
            directive=f"offer meal option {k} with `meal_menu`",
            confidence=0.9,
        )
    wheelchair = make_strategy(
        pb,
        "",
        polarity="avoid",
        when="the passenger asks for a wheelchair at the gate",
        directive="promise a seat upgrade",
        why="upgrades are not ours to give",
    )
    certificates = make_strategy(
        pb,
        "",
        polarity="do",
        directive="compute the total with `calculate` before calling "
        "`book_reservation`",
        situations="You want to fly from New York to Seattle in economy and pay "
        "with your certificates.",
        confidence=0.3,
    )
    pb.refresh_from_db()
    return pb, wheelchair, certificates


def test_an_overlay_item_has_the_stored_search_vector():
    """The full-text vector recall computes for a version's snapshot items is the
    stored column's (description, context, when and situations: migration 0006)."""
    import json

    from django.db import connection

    pb, _, _ = lesson_playbook(fillers=1)
    Strategy.objects.filter(playbook=pb).update(context="on long-haul routes")
    from playbooks.versions import playbook_snapshot

    items = recall.Overlay.of({"items": playbook_snapshot(playbook=pb)}).items
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT e.key::text, ({recall._ITEM_VECTOR})::text FROM {recall._ITEMS}",
            {"items": json.dumps(items)},
        )
        computed = dict(cursor.fetchall())
        cursor.execute(
            "SELECT key::text, search_vector::text FROM playbooks_strategy "
            "WHERE playbook_id = %s",
            [pb.pk],
        )
        stored = dict(cursor.fetchall())
    assert len(stored) == 3 and computed == stored
    vectors = " ".join(stored.values())
    assert "wheelchair" in vectors and "seattl" in vectors and "long-haul" in vectors


def test_a_pinned_lesson_version_is_served_as_it_was():
    """A version that is not the live one carries the lesson shape: its lines are
    rendered from polarity/when/directive, it is found by its situation and by the
    tasks it was learned in (the overlay's own full-text vector), and it reads exactly
    as it did when it was live."""
    pb, wheelchair, certificates = lesson_playbook()
    number = pb.current_version
    tasks = [
        "A passenger needs a wheelchair at the gate",
        "I want to fly from New York to Seattle in economy and pay with a certificate",
    ]
    before = [recall.playbook_recall(playbook=pb, task=t) for t in tasks]
    assert [[i["id"] for i in b.items] for b in before] == [
        [wheelchair.pk],
        [certificates.pk],
    ]
    assert before[0].items[0]["polarity"] == "avoid"
    assert (
        "- When the passenger asks for a wheelchair at the gate, do not promise a "
        "seat upgrade." in before[0].context
    )
    from playbooks.services import strategy_retire

    for strategy in (wheelchair, certificates):
        strategy_retire(playbook=pb, strategy_id=strategy.pk, actor="admin")
    pb.refresh_from_db()
    assert [recall.playbook_recall(playbook=pb, task=t).items for t in tasks] == [
        [],
        [],
    ]
    pinned = [
        recall.playbook_recall(playbook=pb, task=t, version=number) for t in tasks
    ]
    for now, then in zip(pinned, before):
        assert (now.version, now.cohort) == (number, "pinned")
        assert now.context == then.context
        assert [{**i, "score": 0} for i in now.items] == [
            {**i, "score": 0} for i in then.items
        ]
        assert [i["score"] for i in now.items] == pytest.approx(
            [i["score"] for i in then.items], abs=0.02
        )


def test_the_production_cohort_reads_lessons_as_production_did():
    """While a canary runs, the production cohort gets production's lesson lines (from
    the rollout's overlay) and the canary cohort the live ones."""
    pb, wheelchair, _ = lesson_playbook(fillers=2)
    task = "A passenger needs a wheelchair at the gate"
    before = recall.playbook_recall(playbook=pb, task=task)
    with_policy(pb)
    strategy_edit(
        playbook=pb,
        strategy_id=wheelchair.pk,
        actor="admin",
        polarity="do",
        directive="call the gate agent with `request_assistance`",
    )
    pb.refresh_from_db()
    assert pb.canary_version == pb.current_version != pb.production_version
    served = {}
    for i in range(40):
        result = recall.playbook_recall(playbook=pb, task=task, session_id=f"s{i}")
        served.setdefault(result.cohort, result)
    production, canary = served["production"], served["canary"]
    assert production.version == pb.production_version
    assert production.context == before.context
    assert production.items[0]["polarity"] == "avoid"
    assert canary.items[0]["polarity"] == "do"
    assert "`request_assistance`" in canary.context
    assert "`request_assistance`" not in production.context
