"""The offline reflector finds specific lessons in the steps and by contrast with other
runs of the same task and task type."""

import json
import uuid

import pytest

from learning.reflectors.base import RunView, StepView
from learning.reflectors.offline import OfflineReflector, run_parse

pytestmark = pytest.mark.django_db

TASK = (
    "You are mia_li_3668. You want to change reservation 4WQ150 to economy with 2 bags."
)


def call(tool, **args):
    return ("tool_call", tool, f"{tool}({json.dumps(args)})")


def view(
    steps, status="failure", task=TASK, user_id="mia_li_3668", task_type="airline"
):
    return RunView(
        id=uuid.uuid4(),
        task_type=task_type,
        task_description=task,
        status=status,
        score=1.0 if status == "success" else 0.0,
        user_id=user_id,
        steps=[
            StepView(index=i, type=t, tool=tool, description=d)
            for i, (t, tool, d) in enumerate(steps)
        ],
    )


def obs(text):
    return ("observation", "", text)


def say(role, text):
    return ("message", "", f"{role}: {text}")


def lessons(run, peers=()):
    return OfflineReflector().reflect(run=run, peers=list(peers)).lessons


def test_parse_pairs_calls_with_results_in_both_step_shapes():
    """`name({json})` + next observation, and the importer's shape (`result.arguments`,
    observation `result.call_id` / `is_error`) give the same calls."""
    a = view([call("get_user_details", user_id="u1"), obs('{"membership": "gold"}')])
    b = view(
        [
            ("tool_call", "get_user_details", "get_user_details(user_id=u1)"),
            ("observation", "get_user_details", '{"membership": "gold"}'),
        ]
    )
    b.steps[0].result = {"arguments": {"user_id": "u1"}, "call_id": "c1"}
    b.steps[1].result = {"call_id": "c1", "is_error": False}
    for run in (a, b):
        parsed = run_parse(run)
        assert [(c.tool, c.args, c.result_step) for c in parsed.calls] == [
            ("get_user_details", {"user_id": "u1"}, 1)
        ]


def test_a_failing_tool_call_gives_the_policy_step_it_missed():
    """An `Error: payment amount does not add up` observation becomes a harmful strategy
    naming the tool, the fix and the error, with the call and result steps."""
    run = view(
        [
            say("user", "Book JFK to SEA. Yes, go ahead."),
            call("get_user_details", user_id="mia_li_3668"),
            obs(
                '{"membership": "gold", "name": {"first_name": "Mia", "last_name": "Li"}}'
            ),
            call(
                "book_reservation",
                user_id="mia_li_3668",
                cabin="economy",
                payment_methods=[{"payment_id": "certificate_1", "amount": 250}],
            ),
            obs(
                "Error: payment amount does not add up, total price is 305, but paid 255"
            ),
        ]
    )
    found = lessons(run)
    error = next(l for l in found if "does not add up" in l.content)
    assert error.kind == "strategy_harmful"
    assert "`book_reservation`" in error.content and "`calculate`" in error.content
    assert error.step_indexes == [3, 4]
    fact = next(l for l in found if l.kind == "durable_fact")
    assert fact.content == "User mia_li_3668 (Mia Li) has gold membership."
    assert fact.entity == "user:mia_li_3668" and fact.user_id == "mia_li_3668"


def test_repeating_a_failed_call_is_a_loop():
    """The same failing call three times is reported once as a loop with its steps."""
    failing = call(
        "update_reservation_flights", reservation_id="4WQ150", cabin="economy"
    )
    run = view(
        [
            say("user", "yes"),
            failing,
            obs("Error: flight HAT030 not available on date 2024-05-13"),
            failing,
            obs("Error: flight HAT030 not available on date 2024-05-13"),
            failing,
            obs("Error: flight HAT030 not available on date 2024-05-13"),
        ]
    )
    loop = next(l for l in lessons(run) if l.key.startswith("loop-after-error"))
    assert "update_reservation_flights" in loop.content and "3 times" in loop.content
    assert loop.step_indexes == [1, 3, 5]


def test_a_change_without_confirmation_or_lookup_is_flagged():
    """A write right after a request (no explicit yes) and without reading the
    reservation first gives two harmful strategies naming the tools."""
    run = view(
        [
            say("user", "Cancel reservation 4WQ150 because I changed plans."),
            call("cancel_reservation", reservation_id="4WQ150"),
            obs('{"status": "cancelled"}'),
        ]
    )
    found = {l.key: l for l in lessons(run)}
    unconfirmed = found["unconfirmed-write cancel_reservation"]
    assert '"yes"' in unconfirmed.content and unconfirmed.step_indexes == [1, 0]
    lookup = found["no-lookup-before cancel_reservation get_reservation_details"]
    assert "get_reservation_details(reservation_id=4WQ150)" in lookup.content


def test_a_confirmed_write_after_a_lookup_is_not_flagged():
    run = view(
        [
            call("get_reservation_details", reservation_id="4WQ150"),
            obs('{"reservation_id": "4WQ150", "cabin": "economy"}'),
            say("assistant", "I will cancel 4WQ150. Confirm?"),
            say("user", "Yes, please proceed."),
            call("cancel_reservation", reservation_id="4WQ150"),
            obs('{"status": "cancelled"}'),
        ]
    )
    keys = {l.key for l in lessons(run)}
    assert not any(
        k.startswith(("unconfirmed-write", "no-lookup-before")) for k in keys
    )


def test_contrast_with_successes_of_the_same_task_names_the_wrong_arguments():
    """Successful trials of the same task used cabin=economy and 2 bags; the failure
    used business and 3: the lesson names the tool and both values."""

    def trial(status, cabin, bags):
        return view(
            [
                call("get_reservation_details", reservation_id="4WQ150"),
                obs('{"reservation_id": "4WQ150", "cabin": "basic_economy"}'),
                say("user", "yes"),
                call(
                    "update_reservation_flights",
                    reservation_id="4WQ150",
                    cabin=cabin,
                    payment_id="credit_card_1",
                ),
                obs('{"reservation_id": "4WQ150"}'),
                call(
                    "update_reservation_baggages",
                    reservation_id="4WQ150",
                    total_baggages=bags,
                    nonfree_baggages=0,
                ),
                obs('{"reservation_id": "4WQ150"}'),
            ],
            status=status,
        )

    failed = trial("failure", "business", 3)
    winners = [trial("success", "economy", 2), trial("success", "economy", 2)]
    found = lessons(failed, winners)
    cabin = next(
        l
        for l in found
        if l.key.startswith("contrast-args") and "update_reservation_flights" in l.key
    )
    assert "cabin=economy" in cabin.content and "cabin=business" in cabin.content
    assert set(cabin.related_runs) == {w.id for w in winners}
    bags = next(l for l in found if "update_reservation_baggages" in l.key)
    assert "total_baggages=2" in bags.content and "total_baggages=3" in bags.content


def test_contrast_finds_the_change_successes_made_and_the_one_they_avoided():
    """Successes cancelled nothing and changed the flight; the failure cancelled."""
    winner = view(
        [
            say("user", "yes"),
            call("update_reservation_flights", reservation_id="R1", cabin="economy"),
            obs("{}"),
        ],
        status="success",
    )
    failed = view(
        [say("user", "yes"), call("cancel_reservation", reservation_id="R1"), obs("{}")]
    )
    found = {l.key.split(" ")[0]: l for l in lessons(failed, [winner])}
    assert "`update_reservation_flights(" in found["contrast-missing"].content
    assert found["contrast-missing"].kind == "strategy_helpful"
    assert "do not call `cancel_reservation`" in found["contrast-extra"].content


def test_preferences_become_user_scoped_candidates():
    run = view(
        [
            say(
                "user",
                "Hi. I prefer aisle seats and always pay with my Visa ending 7447.",
            ),
            say("assistant", "Noted."),
        ]
    )
    prefs = [l for l in lessons(run) if l.kind == "preference"]
    assert len(prefs) == 1
    assert prefs[0].user_id == "mia_li_3668" and prefs[0].memory_scope == "user"
    assert "I prefer aisle seats" in prefs[0].content


def test_a_recurring_successful_sequence_is_a_procedure():
    """Two successes with the same tool sequence give a procedure listing it."""

    def success():
        return view(
            [
                call("get_user_details", user_id="u"),
                obs("{}"),
                call("get_reservation_details", reservation_id="R"),
                obs("{}"),
                say("user", "yes"),
                call("cancel_reservation", reservation_id="R"),
                obs("{}"),
            ],
            status="success",
        )

    first, second = success(), success()
    procedure = next(l for l in lessons(first, [second]) if l.kind == "procedure")
    assert (
        "`get_user_details` → `get_reservation_details` → `cancel_reservation`"
        in procedure.content
    )
    assert list(procedure.related_runs) == [second.id]


def test_a_run_without_tool_calls_when_the_user_lacks_the_id():
    run = view(
        [
            say("user", "I don't remember the reservation ID, sorry."),
            say("assistant", "I need the reservation id to continue."),
        ]
    )
    (lesson,) = [l for l in lessons(run) if l.kind.startswith("strategy")]
    assert "get_user_details" in lesson.content and lesson.kind == "strategy_helpful"


def test_the_analysis_is_deterministic():
    run = view(
        [
            call("book_reservation", user_id="u"),
            obs("Error: not enough seats on flight HAT1"),
        ]
    )
    assert [l.content for l in lessons(run)] == [l.content for l in lessons(run)]


def test_expected_actions_in_the_metrics_name_what_the_run_left_out():
    """With `metrics.expected_actions` (tau-bench imports carry them), the failed run's
    missing change and its unneeded hand-off are both named."""
    run = view(
        [
            say("user", "Change the passenger to me. Yes."),
            call(
                "update_reservation_flights", reservation_id="FQ8APE", cabin="economy"
            ),
            obs("{}"),
            call("transfer_to_human_agents", summary="cannot change passenger"),
            obs("Transfer successful"),
        ]
    )
    run.metrics = {
        "expected_actions": [
            "get_reservation_details",
            "update_reservation_flights",
            "update_reservation_passengers",
        ]
    }
    found = {l.key.split(" ")[0]: l for l in lessons(run)}
    missing = found["expected-missing"]
    assert "`update_reservation_passengers`" in missing.content
    assert "`transfer_to_human_agents` instead" in missing.content
    extra = found["expected-extra"]
    assert extra.kind == "strategy_harmful" and extra.step_indexes == [3]
