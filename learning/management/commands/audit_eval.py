"""Print recall, precision and false alarms of the audits: on the real reflector
output (tests/learning/audit_real_*.json), on the hand-written cases
(tests/learning/audit_cases.py) and, apart, on the cases written after the rules were
settled."""

import json

from django.core.management.base import BaseCommand

from learning.audits.evaluation import audit_eval_run, audit_eval_table

SETS = ("real", "hand", "later")


class Command(BaseCommand):
    help = (
        "Audit the labelled cases (each in a transaction that is rolled back) and print "
        "recall/precision per audit and false alarms: real reflector output, the "
        "hand-written cases, and the cases written after the rules were settled."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--json", action="store_true", help="print the figures as JSON"
        )
        parser.add_argument(
            "--misses", action="store_true", help="list the cases the audits got wrong"
        )
        parser.add_argument(
            "--set",
            choices=[*SETS, "all"],
            default="all",
            help="which case set to measure (default: all three)",
        )

    def _sets(self, which: str):
        from tests.learning import audit_cases
        from tests.learning.audit_real_cases import load_real_cases

        if which in ("real", "all"):
            cases, about = load_real_cases()
            yield (
                "real",
                "Real reflector output",
                cases,
                f"{about['candidates']} candidates and {about['pairs']} pairs drawn "
                f"at commit {about['drawn_at_commit'] or '?'} by "
                f"{', '.join(about['reflector']) or '?'}; {about['unlabelled']} "
                "drawn but unlabelled",
            )
        if which in ("hand", "all"):
            yield "hand", "Hand-written cases", audit_cases.CASES, ""
        if which in ("later", "all"):
            yield (
                "later",
                "Written after the rules were settled",
                audit_cases.LATER_CASES,
                "",
            )

    def handle(self, *args, **options):
        results = {}
        for name, title, cases, about in self._sets(options["set"]):
            figures = audit_eval_run(cases=cases)
            results[name] = figures
            if options["json"]:
                continue
            self.stdout.write(
                f"\n{title}: {figures['total']} cases across "
                f"{', '.join(figures['domains'])} ({figures['seconds']} s)"
            )
            if about:
                self.stdout.write(about)
            self.stdout.write(audit_eval_table(figures))
            if options["misses"]:
                self._misses(figures)
        if options["json"]:
            self.stdout.write(json.dumps(results, indent=2))

    def _misses(self, figures: dict) -> None:
        for miss in figures["misses"]:
            self.stdout.write(
                f"- {miss['id']}: expected {miss['expect']}, flagged "
                f"{miss['flagged'] or 'nothing'}"
            )
            for message in miss["messages"]:
                self.stdout.write(f"    {message}")
