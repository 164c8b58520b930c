"""`lesson_eval` measures the lessons users get on the bundled development sets, and
the targets hold on slices of each (the full table is in the README)."""

import pytest
from django.core.management import call_command

from learning.lesson_eval import eval_sets, lesson_eval

pytestmark = pytest.mark.django_db


def sets(*names):
    return [s for s in eval_sets() if s.name in names]


def test_targets_hold_on_a_slice_of_every_set():
    """Failed runs with a lesson >= 60% on the sets with judged failures, root-cause
    lessons for >= 50% of tau-bench failures without the evaluator's expected actions,
    no strategy text with a run-specific id, and cited steps that hold the failure."""
    reports = {
        r.name: r
        for r in lesson_eval(
            sets=sets(
                "tau-bench airline, no expected_actions", "SWE-agent", "ReAct HotpotQA"
            ),
            limit=120,
        )
    }
    tau = reports["tau-bench airline, no expected_actions"]
    react = reports["ReAct HotpotQA"]
    swe = reports["SWE-agent"]
    for report in (tau, react):
        assert report.failed >= 30
        assert report.share(report.failed_with_lesson, report.failed) >= 0.6, (
            report.as_dict()
        )
    assert tau.share(tau.failed_with_root_cause, tau.failed) >= 0.5, tau.as_dict()
    for report in (tau, react, swe):
        assert report.run_specific == 0, report.as_dict()["top"]
        assert report.share(report.cited_signal, report.cited_checked) >= 0.9
        assert report.lessons_per_run <= 4
    # Coding runs without a verdict still get lessons where something went wrong.
    assert swe.runs == 22 and swe.failed_with_lesson >= 8


def test_the_in_memory_path_gives_the_candidates_the_stored_path_gives(settings):
    """The default (in-memory) measurement is what users get: on a slice, every
    candidate text and the runs behind it equal those of the stored path (importer,
    run_reflect, candidates merged by fingerprint). Every success is reflected here so
    that sampling cannot differ between the two."""
    settings.FLYWHEEL_SUCCESS_SAMPLE_RATE = 1.0
    chosen = sets("tau-bench airline", "SWE-agent")
    memory = lesson_eval(sets=chosen, limit=24)
    stored = lesson_eval(sets=chosen, limit=24, path="db")
    for fast, real in zip(memory, stored):
        assert fast.evidence_by_text, fast.name
        assert fast.evidence_by_text == real.evidence_by_text, fast.name
        assert (fast.runs, fast.failed, fast.reflected) == (
            real.runs,
            real.failed,
            real.reflected,
        )


def test_the_command_prints_the_table_and_the_most_repeated_lessons(capsys):
    call_command("lesson_eval", "--set", "SWE-agent")
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["set", "runs", "failed"]
    assert "SWE-agent: the 15 most repeated lessons" in out
    assert "match the indentation of the surrounding lines" in out
