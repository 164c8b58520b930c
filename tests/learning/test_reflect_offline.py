"""The offline reflector learns from signals every agent's runs carry — failing calls,
loops, ignored suggestions, the judged outcome, contrasts with successful runs,
feedback — on any domain: each behaviour is checked on runs of more than one kind
(customer support, coding, question answering), and lessons stay general (tools,
fields, situations; one run's values only in the why)."""

import json
import uuid

import pytest

from learning.lessons import run_specific_terms
from learning.reflectors.base import FeedbackView, RunView, StepView
from learning.reflectors.offline import OfflineReflector, run_parse
from learning.reflectors.offline.knowledge import tool_knowledge
from learning.reflectors.offline.rules import rules_check
from learning.reflectors.offline.signals import error_signal
from learning.reflectors.offline.text import question_form


def call(tool, **args):
    return ("tool_call", tool, f"{tool}({json.dumps(args)})", None)


def command(text):
    """A shell-style call, as the swe-agent importer stores it."""
    return ("tool_call", text.split()[0], text, {"arguments": {"command": text}})


def bracket(tool, value, name):
    """A ReAct action, as the react-log importer stores it."""
    return ("tool_call", tool, f"{tool}[{value}]", {"arguments": {name: value}})


def obs(text):
    return ("observation", "", text, None)


def say(role, text):
    return ("message", "", f"{role}: {text}", None)


def think(text):
    return ("decision", "", text, None)


def view(
    steps, *, status="failure", task="Change the flight", task_type="support", **kw
):
    return RunView(
        id=kw.pop("id", None) or uuid.uuid4(),
        task_type=task_type,
        task_description=task,
        status=status,
        score=1.0 if status == "success" else 0.0,
        user_id=kw.pop("user_id", "u1"),
        steps=[
            StepView(index=i, type=t, tool=tool, description=d, result=r)
            for i, (t, tool, d, r) in enumerate(steps)
        ],
        **kw,
    )


def lessons(run, peers=()):
    return OfflineReflector().reflect(run=run, peers=list(peers)).lessons


def by_family(found):
    return {lesson.key.split("|")[0]: lesson for lesson in found}


# --- reading runs ---------------------------------------------------------------------


def test_calls_are_paired_with_their_answers_in_every_step_shape():
    """`name({json})` + observation, the importers' call ids, a call carrying its own
    output (OpenTelemetry), a ReAct `Tool[arg]` action and a shell command all give
    one call with its arguments and answer."""
    shapes = [
        [call("get_order", order_id="A1"), obs('{"status": "paid"}')],
        [
            (
                "tool_call",
                "get_order",
                "get_order(order_id=A1)",
                {"arguments": {"order_id": "A1"}, "call_id": "c1"},
            ),
            (
                "observation",
                "get_order",
                '{"status": "paid"}',
                {"call_id": "c1", "is_error": False},
            ),
        ],
        [
            (
                "tool_call",
                "get_order",
                "get_order",
                {"arguments": {"order_id": "A1"}, "output": '{"status": "paid"}'},
            )
        ],
    ]
    for steps in shapes:
        (found,) = run_parse(view(steps)).calls
        assert (found.tool, found.args, found.result_text) == (
            "get_order",
            {"order_id": "A1"},
            '{"status": "paid"}',
        )
    react = run_parse(
        view(
            [
                ("tool_call", "Search", "Search[Nick Park]", None),
                obs("Nicholas Park is …"),
            ]
        )
    )
    assert (react.calls[0].tool, react.calls[0].args) == (
        "Search",
        {"input": "Nick Park"},
    )
    shell = run_parse(view([command("python reproduce.py"), obs("345")]))
    assert shell.calls[0].args == {"command": "python reproduce.py"}


@pytest.mark.parametrize(
    "text,category",
    [
        (
            "Error: payment amount does not add up, total price is 305, but paid 255",
            "invalid",
        ),
        (
            'Traceback (most recent call last):\n  File "x.py", line 5\nValueError: bad',
            "exception",
        ),
        (
            "Your proposed edit has introduced new syntax error(s).\nERRORS:\n- E999 IndentationError: unexpected indent",
            "syntax",
        ),
        ("bash: foo: command not found", "exit"),
        ("HTTP 503 Service Unavailable", "http"),
        (
            "Could not find [Scat]. Similar: ['Scatman John', 'Scat singing']",
            "not_found",
        ),
        ("No Results", "no_results"),
        ("Permission denied", "denied"),
        ("EXECUTION TIMED OUT", "timeout"),
        ('{"error": "order not found"}', "not_found"),
        ("Wrong flag!", "invalid"),
        # Not failures: results that merely contain such words further in.
        ('Found 1 matches for "fields.py" in /repo', None),
        ('{"flight_number": "HAT1", "status": "available"}', None),
        ("Warning: could not find terminfo database", None),
        # A verdict the environment appended after pages of a tool's output counts;
        # the same words in code or data at the end of a listing do not.
        (
            "Multikey mode using keys: pub1.pub, pub2.pub\n"
            + "[*] Performing lehmer attack on pub1.pub.\n" * 40
            + "EXECUTION TIMED OUT BECAUSE NO OUTPUT WAS PRODUCED FOR MORE THAN 60.0 SECONDS.\n"
            + "(Open file: /ctf/server.py)\n(Current directory: /ctf)",
            "timeout",
        ),
        ("building target\n" * 60 + "Process finished with exit code 2", "exit"),
        ("line of source\n" * 60 + '    raise TimeoutError("timed out")', None),
        ("row,value\n" * 60 + "timed_out=3, exit code 1 rows", None),
        (
            "Function main not found! Instead, here is the disassembly:\n"
            + "mov eax, 1\n" * 80,
            None,
        ),
        (
            "The band formed in 2009. "
            + "It toured widely; critics found the album invalid as art. " * 12,
            None,
        ),
    ],
)
def test_failures_are_read_from_any_tool_answer(text, category):
    found = error_signal(text)
    assert (found.category if found else None) == category


def test_an_error_flag_on_the_answer_counts_whatever_its_text():
    assert (
        error_signal("the request could not be completed", {"is_error": True}).category
        == "error"
    )
    span = run_parse(
        view(
            [
                (
                    "tool_call",
                    "refund",
                    "refund",
                    {"arguments": {}, "error": "upstream 500"},
                )
            ]
        )
    )
    assert span.calls[0].failed


def test_the_general_shape_of_an_error_drops_one_runs_particulars():
    shape = error_signal("Error: flight HAT030 not available on date 2024-05-13").shape
    assert shape == "flight … not available on date"
    assert not run_specific_terms(
        error_signal("Error: payment method certificate_7504069 not found").shape
    )


# --- which tools change state: learned, never from names --------------------------------


def test_state_changing_tools_are_learned_from_the_data_not_from_names():
    """A tool whose answer shows the record it names with new values changes state; a
    `set_`-named tool with no such evidence does not; a read answering the same twice
    only reads."""
    run = view(
        [
            call("get_order", order_id="A1"),
            obs('{"order_id": "A1", "status": "paid", "total": 10}'),
            call("set_cursors", start=1, end=5),
            obs("cursors set"),
            call("amend_order", order_id="A1", total=12),
            obs('{"order_id": "A1", "status": "paid", "total": 12}'),
            call("get_catalog", page=1),
            obs('{"items": ["a", "b"]}'),
            call("get_catalog", page=1),
            obs('{"items": ["a", "b"]}'),
        ]
    )
    known = tool_knowledge([run_parse(run)])
    assert "amend_order" in known.changes
    assert "set_cursors" not in known.changes and "get_order" not in known.changes
    assert "get_catalog" in known.reads


# --- failing calls ------------------------------------------------------------------------


def test_a_rejected_call_names_the_tool_and_the_argument_the_error_speaks_of():
    """Support agent: the error mentions the payment, so the lesson names
    `payment_methods`; the ids and amounts stay in the why; call and answer cited."""
    run = view(
        [
            say("user", "Book it. Yes."),
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
    (lesson,) = [x for x in lessons(run) if x.key.startswith("error|")]
    assert (
        "`book_reservation`" in lesson.content and "`payment_methods`" in lesson.content
    )
    assert "payment amount does not add up" in lesson.content
    assert not run_specific_terms(lesson.content) and "305" in lesson.why
    assert lesson.step_indexes == [1, 2] and lesson.root_cause
    assert lesson.polarity == "do" and lesson.provenance == "failure"


def test_a_rejected_edit_fixed_by_its_indentation_teaches_the_indentation():
    """Coding agent: `edit` rejected for a syntax error, then accepted with only the
    indentation changed: the lesson is about indentation, citing both calls."""
    bad = "edit 10:10\nreturn int(round(x))\nend_of_edit"
    good = "edit 10:10\n        return int(round(x))\nend_of_edit"
    run = view(
        [
            command(bad),
            obs(
                "Your proposed edit has introduced new syntax error(s).\nERRORS:\n- E999 IndentationError: unexpected indent"
            ),
            command(good),
            obs("File updated."),
            command("submit"),
            obs("diff --git a/x.py b/x.py"),
        ],
        status="partial",
        task="Fix the rounding of TimeDelta",
        task_type="swe-agent",
    )
    (lesson,) = lessons(run)
    assert (
        lesson.content
        == "When calling `edit`, match the indentation of the surrounding lines in `command`."
    )
    assert lesson.step_indexes == [0, 1, 2, 3]


def test_an_edit_rejected_for_an_undefined_name_asks_for_the_name_not_the_syntax():
    """A linter's "undefined name" is a missing import or definition, which checking
    the syntax would not find."""
    run = view(
        [
            command("edit 2:2\n    cipher = binascii.unhexlify(f.read())\nend_of_edit"),
            obs(
                "Your proposed edit has introduced new syntax error(s).\nERRORS:\n"
                "- F821 undefined name 'binascii'"
            ),
        ],
        task_type="swe-agent",
    )
    (lesson,) = lessons(run)
    assert lesson.content.startswith(
        "When calling `edit`, define or import every name `command` uses before sending it"
    )
    assert "binascii" not in lesson.content and "binascii" in lesson.why


@pytest.mark.parametrize(
    ("line", "program", "situation"),
    [
        (
            "./solve --brute",
            "./solve",
            "When running a program of the task's own files (here `./solve`)",
        ),
        ("python exploit.py", "python", "When calling `python`"),
    ],
)
def test_a_failed_program_of_the_tasks_own_files_is_a_lesson_about_such_programs(
    line, program, situation
):
    """`./solve` exists only in that task's directory: "When calling `./solve`" would
    match no other task, so the situation is running such a program (this one named as
    the example). An installed program keeps its own name."""
    run = view(
        [command(line), obs("EXECUTION TIMED OUT")],
        task_type="swe-agent",
    )
    (lesson,) = lessons(run)
    assert lesson.content.startswith(situation + ", limit the call"), lesson.content
    assert f"since `{program}` was stopped" in lesson.content


def test_reproducing_the_reported_bug_and_retesting_after_an_edit_teach_nothing():
    """The traceback the agent set out to provoke, and the same script re-run after an
    edit (a retest, not a loop), give no lesson."""
    trace = "Traceback (most recent call last):\n  File \"r.py\", line 3\nAttributeError: no attribute 'PixelRepresentation'"
    run = view(
        [
            think("First, I'll create a script to reproduce the bug."),
            command("python reproduce.py"),
            obs(trace),
            command("edit 3:3\n    x = 1\nend_of_edit"),
            obs("File updated."),
            command("python reproduce.py"),
            obs(trace),
            command("edit 4:4\n    y = 2\nend_of_edit"),
            obs("File updated."),
            command("python reproduce.py"),
            obs("Script completed successfully, no errors."),
        ],
        status="partial",
        task="pixel_array fails: AttributeError no attribute PixelRepresentation",
        task_type="swe-agent",
    )
    assert lessons(run) == []


def test_a_call_that_worked_unchanged_after_one_other_call_on_its_subject_needed_it():
    """CTF agent: `strings` on a file still in its archive misses, `unzip` unpacks it,
    the same `strings` call works: unpacking was what the first call needed."""
    missing = command("strings flash_c8429a.img | grep flag")
    run = view(
        [
            missing,
            obs("strings: 'flash_c8429a.img': No such file"),
            command("unzip flash_c8429a.zip"),
            obs("Archive:  flash_c8429a.zip\n  inflating: flash_c8429a.img"),
            missing,
            obs("flag{b3l0w_th3_r4dar}"),
        ],
        status="partial",
        task="Find the flag in the provided flash image.",
        task_type="ctf",
    )
    lesson = by_family(lessons(run))["prerequisite"]
    assert lesson.content == (
        "When `strings` answers “No such file”, call `unzip` on the `.zip` file of the "
        "same name first, then repeat the call."
    )
    assert lesson.step_indexes == [0, 1, 2, 3, 4, 5]
    assert not run_specific_terms(lesson.content)
    # A call between on the missing file itself: no other file to look for.
    run.steps[2] = StepView(
        index=2, type="tool_call", tool="chmod", description="chmod +r flash_c8429a.img"
    )
    assert by_family(lessons(run))["prerequisite"].content == (
        "When `strings` answers “No such file”, call `chmod` first, then repeat the call."
    )
    # A call between on something else is not shown to be the cause: no lesson.
    run.steps[2] = StepView(index=2, type="tool_call", tool="ls", description="ls -la")
    assert "prerequisite" not in by_family(lessons(run))
    # Nor a wrong argument fixed by an edit (the retest of a coding run).
    retest = view(
        [
            command("python check.py"),
            obs("SyntaxError: invalid syntax"),
            command("edit check.py 3:3"),
            obs("File updated."),
            command("python check.py"),
            obs("ok"),
        ],
        task_type="swe-agent",
    )
    assert "prerequisite" not in by_family(lessons(retest))


def test_the_same_failing_call_again_with_nothing_changed_between_is_a_loop():
    """CTF agent: `submit` with the same flag, rejected each time, nothing in between."""
    wrong = command("submit flag{abc}")
    run = view(
        [
            wrong,
            obs("Wrong flag!"),
            wrong,
            obs("Wrong flag!"),
            wrong,
            obs("Wrong flag!"),
        ],
        task_type="ctf",
    )
    loop = by_family(lessons(run))["loop"]
    assert loop.polarity == "avoid" and loop.kind == "strategy_harmful"
    assert (
        loop.content
        == "When `submit` answers “Wrong flag”, avoid repeating the same `submit` call unchanged."
    )
    assert loop.step_indexes == [0, 1, 2, 3, 4, 5]


def test_an_unknown_call_between_two_identical_failures_may_have_changed_things():
    """Between the two runs of the script stands a call that may change state: not a
    loop."""
    failing = command("python check.py")
    run = view(
        [
            failing,
            obs("exit code 1"),
            command("patch apply fix.diff"),
            obs("ok"),
            failing,
            obs("exit code 1"),
        ]
    )
    assert "loop" not in by_family(lessons(run))


def test_ignored_suggestions_and_quoted_queries_are_lessons():
    """Question answering: `Search` offers similar titles and the next search uses none;
    a quoted title it lists unquoted fails: two lessons, neither naming the titles."""
    run = view(
        [
            bracket("Search", "Scat", "entity"),
            obs("Could not find [Scat]. Similar: ['Scatman John', 'Scat singing']"),
            bracket("Search", "Scat player 1939", "entity"),
            obs("Could not find [Scat player 1939]. Similar: []"),
            bracket("Search", '"Is Google Making Us Stupid?"', "entity"),
            obs(
                "Could not find [\"Is Google Making Us Stupid?\"]. Similar: ['Is Google Making Us Stupid?']"
            ),
            bracket("Finish", "Oklahoma", "answer"),
        ],
        task="What team was led to victory in 1939 by a player nicknamed Scat?",
        task_type="hotpotqa",
        metrics={"expected_answer": "Oklahoma Sooners", "final_answer": "Oklahoma"},
    )
    found = by_family(lessons(run))
    assert found["suggest"].content == (
        "When `Search` answers “Could not find” and lists alternatives, retry with one "
        "of the listed alternatives, exactly as written."
    )
    assert (
        found["fix"].content
        == "When calling `Search`, pass `entity` without quotation marks."
    )
    assert all("Scat" not in lesson.content for lesson in found.values())


def test_alternatives_that_name_something_else_are_no_lesson():
    """`Search` offered titles that do not name what was searched for: trying one of
    them would not have found it, so ignoring them is no mistake."""

    def searched(similar):
        return view(
            [
                bracket("Search", "British physicist", "entity"),
                obs(f"Could not find [British physicist]. Similar: {similar}"),
                bracket("Search", "chief scientific adviser", "entity"),
                obs("Could not find [chief scientific adviser]. Similar: []"),
                bracket("Finish", "Patrick Vallance", "answer"),
            ],
            task="Who is a British physicist and chief scientific adviser?",
            task_type="hotpotqa",
            metrics={
                "expected_answer": "Robert May",
                "final_answer": "Patrick Vallance",
            },
        )

    unrelated = searched("['J. J. Thomson', 'John Ellis', 'Cathode ray']")
    assert "suggest" not in by_family(lessons(unrelated))
    # One that holds the words searched for is the title the search meant.
    close = searched("['J. J. Thomson', 'List of British physicists']")
    assert "suggest" in by_family(lessons(close))


# --- the outcome ----------------------------------------------------------------------------


def test_a_wrong_final_answer_is_read_against_the_gold_answer_and_the_question_form():
    """The answer is part of the expected one, which an observation stated: the lesson
    says to give the complete name, in the situation of the question's form."""
    run = view(
        [
            bracket("Search", "Juliet Hulme", "entity"),
            obs("Anne Perry (born Juliet Marion Hulme) is an English author."),
            bracket("Finish", "Anne", "answer"),
        ],
        task="What name did the author depicted as Juliet Hulme write under?",
        task_type="hotpotqa",
        metrics={"expected_answer": "Anne Perry", "final_answer": "Anne"},
    )
    lesson = by_family(lessons(run))["answer"]
    assert lesson.content == (
        "When the question asks “what name”, give `Finish` the complete name or phrase "
        "as the observation states it, rather than a part of it."
    )
    assert lesson.step_indexes == [1, 2] and "Anne Perry" in lesson.why
    # A bare "what" names no kind of question: such a lesson would fit any question.
    run.task_description = "What is the given name of the author once Juliet Hulme?"
    assert "answer" not in by_family(lessons(run))
    # Nor does "what" before a preposition ("presented what about his works?").
    run.task_description = "The term presented what about the author's works?"
    assert "answer" not in by_family(lessons(run))


@pytest.mark.parametrize(
    "question, form",
    [
        ("What year did the magazine close?", "what year"),
        # the noun the phrase asks for, not the adjective before it
        (
            "The union serves what public research university that opened in 1966?",
            "what university",
        ),
        ("Woman's Era and Naj are what kind of magazines?", "what kind"),
        ("In which movie did the sisters act together?", "which movie"),
        ("In which the sisters acted together?", "which"),
        ("The play presented what about his works?", "what"),
    ],
)
def test_the_question_form_names_the_kind_of_thing_asked_for(question, form):
    assert question_form(question) == f"the question asks “{form}”"


def test_an_answer_no_observation_states_is_unsupported():
    run = view(
        [
            bracket("Search", "Creed", "entity"),
            obs("A creed is a statement of belief."),
            bracket("Finish", "1995", "answer"),
        ],
        task="The band disbanded in what year?",
        task_type="hotpotqa",
        metrics={"expected_answer": "2004", "final_answer": "1995"},
    )
    lesson = by_family(lessons(run))["answer"]
    assert "only with an answer an observation states" in lesson.content
    assert lesson.when == "the question asks “what year”"


def test_expected_actions_name_the_change_left_out_and_the_one_not_asked_for():
    """With the evaluator's expected actions in the metrics: the missing call, and a
    state-changing call that was not expected (its state change seen in the data)."""
    run = view(
        [
            call("get_order", order_id="A1"),
            obs('{"order_id": "A1", "status": "paid"}'),
            call("cancel_order", order_id="A1"),
            obs('{"order_id": "A1", "status": "cancelled"}'),
        ],
        metrics={"expected_actions": ["get_order", "exchange_items"]},
    )
    found = by_family(lessons(run))
    assert (
        found["missing"].content
        == "When the task asks to exchange items, call `exchange_items` before finishing."
    )
    # The change the evaluator wanted is known: the lesson is bound to it.
    assert (
        found["extra"].content
        == "When the task asks to exchange items, do not call `cancel_order`."
    )
    assert found["extra"].step_indexes == [2, 3]


# --- contrast with successful runs ------------------------------------------------------------


def _trial(status, quantity, *, task="Exchange 2 shirts in order A1"):
    return view(
        [
            say("user", task),
            call("get_order", order_id="A1"),
            obs('{"order_id": "A1", "status": "delivered", "items": 3}'),
            call("exchange_items", order_id="A1", quantity=quantity),
            obs(
                f'{{"order_id": "A1", "status": "exchange requested", "items": {quantity}}}'
            ),
        ],
        status=status,
        task=task,
    )


def test_successful_runs_of_the_same_task_show_the_argument_that_was_wrong():
    """The winners passed the quantity the task asked for; the failure took it from the
    order lookup: the lesson says where the value should come from."""
    failed = _trial("failure", 3)
    winners = [_trial("success", 2), _trial("success", 2)]
    args = by_family(lessons(failed, winners))["args"]
    assert args.content == (
        "Before calling `exchange_items`, take `quantity` from what the task asks for, "
        "rather than from the `get_order` result."
    )
    assert set(args.related_runs) == {w.id for w in winners} and args.root_cause
    assert "quantity=2" in args.why and "quantity=3" in args.why


def test_a_change_no_successful_run_made_is_questioned():
    winners = [_trial("success", 2), _trial("success", 2)]
    failed = view(
        [
            say("user", "Exchange 2 shirts in order A1"),
            call("get_order", order_id="A1"),
            obs('{"order_id": "A1", "status": "delivered"}'),
            call("cancel_order", order_id="A1"),
            obs('{"order_id": "A1", "status": "cancelled"}'),
        ],
        task="Exchange 2 shirts in order A1",
    )
    found = by_family(lessons(failed, winners))
    # The winners show which change the task wanted: the lesson is bound to it, and
    # says what to avoid, not "check the task" for every later `cancel_order`.
    extra = found["extra"]
    assert extra.content == (
        "When the task asks to exchange items, do not call `cancel_order`."
    )
    assert extra.kind == "strategy_harmful" and extra.polarity == "avoid"
    assert (
        found["missing"].content
        == "When the task asks to exchange items, call `exchange_items` before finishing."
    )


def test_a_change_where_successful_runs_changed_nothing_is_questioned():
    """Successful runs of the task changed nothing (they refused): there is no wanted
    change to bind the lesson to, so it asks to check the call against the task and
    the rules."""

    def refused():
        return view(
            [
                say("user", "Cancel order A1"),
                call("get_order", order_id="A1"),
                obs('{"order_id": "A1", "status": "delivered"}'),
                say("assistant", "A delivered order cannot be cancelled."),
            ],
            task="Cancel order A1",
            status="success",
        )

    failed = view(
        [
            say("user", "Cancel order A1"),
            call("get_order", order_id="A1"),
            obs('{"order_id": "A1", "status": "delivered"}'),
            call("cancel_order", order_id="A1"),
            obs('{"order_id": "A1", "status": "cancelled"}'),
        ],
        task="Cancel order A1",
    )
    extra = by_family(lessons(failed, [refused(), refused()]))["extra"]
    assert extra.content == (
        "Before calling `cancel_order`, check that the task asks for this step and "
        "the rules allow it."
    )


# --- precision -----------------------------------------------------------------------------------


def test_a_failed_run_without_any_signal_gets_no_lesson():
    """No error, no judged answer, no peers, no feedback: nothing to say, and nothing
    generic is said."""
    run = view(
        [
            say("user", "Hello"),
            call("get_order", order_id="A1"),
            obs('{"status": "paid"}'),
            say("assistant", "Done."),
        ]
    )
    assert lessons(run) == []


def test_the_same_lesson_in_two_runs_has_one_key_and_the_analysis_is_deterministic():
    def failing(order):
        return view(
            [
                call("refund", order_id=order),
                obs(f"Error: order {order} cannot be refunded after 30 days"),
            ]
        )

    a, b = (
        lessons(failing("A1")),
        lessons(failing("ZX9")),
    )
    assert [x.key for x in a] == [x.key for x in b] and [x.content for x in a] == [
        x.content for x in b
    ]
    assert [x.content for x in lessons(failing("A1"))] == [x.content for x in a]


# --- memories --------------------------------------------------------------------------------------


def test_a_lasting_preference_is_kept_and_an_answer_is_not():
    run = view(
        [
            say("user", "I always fly in an aisle seat, by the way."),
            say("assistant", "Would you like travel insurance?"),
            say("user", "No, I never want insurance."),
        ],
        user_id="mia_li_3668",
    )
    prefs = [x for x in lessons(run) if x.kind == "preference"]
    assert [p.content for p in prefs] == [
        "mia_li_3668 prefers: “I always fly in an aisle seat, by the way.”"
    ]
    assert prefs[0].memory_scope == "user" and prefs[0].user_id == "mia_li_3668"


def test_a_durable_fact_holds_the_state_at_the_end_of_the_run():
    """The record read before the change is stale; the fact comes from the answer after
    the last change, citing that step."""
    run = view(
        [
            call("get_reservation", reservation_id="R1"),
            obs(
                '{"reservation_id": "R1", "user_id": "u1", "cabin": "basic_economy", "insurance": "no"}'
            ),
            call("update_reservation", reservation_id="R1", cabin="economy"),
            obs(
                '{"reservation_id": "R1", "user_id": "u1", "cabin": "economy", "insurance": "no"}'
            ),
        ],
        status="success",
    )
    (fact,) = [x for x in lessons(run) if x.kind == "durable_fact"]
    assert "cabin economy" in fact.content and "basic_economy" not in fact.content
    assert fact.step_indexes == [2, 3] and fact.entity == "reservation:R1"


def test_no_fact_when_a_change_came_after_the_last_time_the_record_was_shown():
    run = view(
        [
            call("get_reservation", reservation_id="R1"),
            obs(
                '{"reservation_id": "R1", "cabin": "basic_economy", "insurance": "no"}'
            ),
            call("update_reservation", reservation_id="R1", cabin="economy"),
            obs('{"reservation_id": "R1", "cabin": "economy", "insurance": "no"}'),
            call("upgrade_reservation", reservation_id="R1", cabin="business"),
            obs("Reservation upgraded successfully"),
        ],
        status="success",
    )
    assert [x for x in lessons(run) if x.kind == "durable_fact"] == []


# --- feedback ---------------------------------------------------------------------------------------


def test_a_persons_correction_becomes_a_lesson_about_the_step_it_concerns():
    """A run that looked fine, corrected by a person afterwards: the lesson says what
    the correction says, about the call it concerns, citing the feedback."""
    run = view(
        [
            call("get_order", order_id="A1"),
            obs('{"order_id": "A1", "paid_with": "credit_card_9"}'),
            call("refund_order", order_id="A1", payment_method="gift_card_77"),
            obs("Refund issued"),
        ],
        status="success",
        feedback=[
            FeedbackView(
                feedback_type="human",
                score=0.1,
                source="qa",
                message="Refunded to the gift card; the customer asked for the original card.",
            )
        ],
    )
    run.score = 0.1  # the effective score after the feedback
    lesson = by_family(lessons(run))["feedback"]
    assert lesson.content == (
        "When calling `refund_order`, match what was asked for (the original card) "
        "rather than what was done (refunded to the gift card)."
    )
    assert lesson.provenance == "feedback" and lesson.step_indexes == [2, 3]
    assert (
        "human feedback from qa" in lesson.rationale
        and "original card" in lesson.rationale
    )


def test_a_failed_test_posted_as_feedback_asks_for_the_test_to_pass():
    run = view(
        [command("edit 1:1\nx = 2\nend_of_edit"), obs("File updated.")],
        status="success",
        feedback=[
            FeedbackView(
                feedback_type="test",
                score=0.0,
                source="ci",
                message="test_rounding failed: AssertionError 344 != 345",
            )
        ],
    )
    run.score = 0.0
    lesson = by_family(lessons(run))["feedback"]
    assert "make sure `test_rounding` passes before finishing" in lesson.content


# --- a namespace's own rules ---------------------------------------------------------------------------


RULES = {
    "state_tools": ["book_reservation"],
    "rules": [
        {
            "id": "total",
            "on": "error",
            "match": "does not add up",
            "when": "paying for a booking",
            "directive": "compute the total with `calculate` first",
        },
        {
            "id": "confirm",
            "on": "call",
            "tool": "*",
            "requires": "confirmation",
            "when": "about to change a booking",
            "directive": "get the user's explicit yes first",
        },
    ],
}


def test_namespace_rules_are_data_and_replace_the_general_lesson_for_their_error():
    run = view(
        [
            say("user", "Book the 9am flight."),
            call("book_reservation", user_id="u1", payment_methods=[]),
            obs(
                "Error: payment amount does not add up, total price is 305, but paid 0"
            ),
        ],
        rules=RULES,
    )
    found = {x.key: x for x in lessons(run)}
    assert (
        found["rule|total"].content
        == "When paying for a booking, compute the total with `calculate` first."
    )
    assert (
        found["rule|confirm"].content
        == "When about to change a booking, get the user's explicit yes first."
    )
    assert not any(k.startswith("error|") for k in found)


def test_a_rule_set_is_checked_field_by_field():
    assert rules_check(RULES) == []
    problems = rules_check(
        {"state_tools": "x", "rules": [{"on": "error", "match": "(", "directive": ""}]}
    )
    assert "state_tools: must be a list of tool names" in problems
    assert any(
        p.startswith("rules.0.match: not a regular expression") for p in problems
    )
    assert "rules.0.directive: required text" in problems


def test_a_failure_inside_a_pipeline_is_the_failing_programs():
    """`echo … | base64 -d` answering "base64: invalid input" is a failure of
    `base64`: the lesson names it, not `echo`."""
    run = view(
        [
            think("Decode the message."),
            command("echo 'aGVsbG8gd29ybGQ' | base64 -d"),
            obs("hello worlbase64: invalid input"),
            think("Give up."),
        ],
        task="Decode the secret message in message.txt",
    )
    lesson = by_family(lessons(run))["error"]
    assert lesson.content.startswith("When calling `base64`,")
    assert "echo" not in lesson.content and "`base64` answered" in lesson.why
    # Without a later program named in the error, the call's own tool keeps it.
    run.steps[2].description = "invalid input"
    assert by_family(lessons(run))["error"].content.startswith("When calling `echo`,")


def test_an_answer_the_reasoning_inferred_is_unsupported():
    """An observation mentions the answer, but the thought before it says it "must be"
    the answer: inferred, not read — the lesson cites that thought."""

    def answered(thought):
        return view(
            [
                bracket("Search", "Nicholas II", "entity"),
                obs("Nicholas II abdicated in 1917, during World War I."),
                think(thought),
                bracket("Finish", "World War I", "answer"),
            ],
            task="During what war were the two countries rivals after the abdication?",
            task_type="hotpotqa",
            metrics={"expected_answer": "the Cold War", "final_answer": "World War I"},
        )

    lesson = by_family(lessons(answered("So the war after it must be World War I.")))[
        "answer"
    ]
    assert lesson.content == (
        "When the question asks “what war”, call `Finish` only with an answer an "
        "observation states, and search further when none does."
    )
    assert lesson.step_indexes == [2, 3] and "“must be”" in lesson.why
    # Read, not inferred: the same answer teaches nothing here.
    read = answered("The observation says World War I.")
    assert "answer" not in by_family(lessons(read))
