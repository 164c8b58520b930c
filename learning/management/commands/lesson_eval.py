"""python manage.py lesson_eval: the lesson-quality table over the bundled sets."""

import json

from django.core.management.base import BaseCommand, CommandError

from learning.lesson_eval import eval_sets, lesson_eval, report_lines


class Command(BaseCommand):
    help = (
        "Reflect the development sets in fixtures/ (tau-bench airline with and without "
        "expected_actions, SWE-agent, ReAct HotpotQA) the way the pipeline does and "
        "print, per set: runs, failed runs with a lesson, lessons per run, lessons "
        "citing the failure, lessons naming a run-specific id, and the most repeated "
        "lesson texts. --db runs the stored path (import, run_reflect, candidates) in a "
        "throwaway namespace that is rolled back."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--set",
            action="append",
            dest="names",
            help="only the sets whose name contains this (repeatable)",
        )
        parser.add_argument("--limit", type=int, help="at most this many runs per set")
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="print JSON instead"
        )
        parser.add_argument(
            "--db",
            action="store_true",
            help="go through the database (import, run_reflect, candidates; slower)",
        )
        parser.add_argument(
            "--keep",
            metavar="PREFIX",
            default="",
            help="with --db: keep the runs and candidates in namespaces named "
            "PREFIX-… (to read them in the console) instead of rolling back",
        )

    def handle(self, *args, names, limit, as_json, db, keep, **options):
        sets = eval_sets()
        if names:
            sets = [s for s in sets if any(n.lower() in s.name.lower() for n in names)]
            if not sets:
                raise CommandError(
                    "no such set; the sets are: "
                    + ", ".join(s.name for s in eval_sets())
                )
        missing = [str(s.path) for s in sets if not s.path.exists()]
        if missing:
            raise CommandError(f"fixtures missing: {', '.join(missing)}")
        if keep and not db:
            raise CommandError("--keep needs --db")
        reports = lesson_eval(
            sets=sets, limit=limit, path="db" if db else "memory", keep=keep
        )
        if as_json:
            self.stdout.write(_dumps([r.as_dict() for r in reports]))
            return
        for line in report_lines(reports):
            self.stdout.write(line)


def _dumps(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)
