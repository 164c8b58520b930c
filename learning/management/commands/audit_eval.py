"""Print recall, precision and false alarms of the audits on the labelled case set."""

import json

from django.core.management.base import BaseCommand

from learning.audits.evaluation import audit_eval_run, audit_eval_table


class Command(BaseCommand):
    help = (
        "Audit the labelled cases in tests/learning/audit_cases.py (in a transaction "
        "that is rolled back) and print recall/precision per audit and false alarms."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--json", action="store_true", help="print the figures as JSON"
        )
        parser.add_argument(
            "--misses", action="store_true", help="list the cases the audits got wrong"
        )

    def handle(self, *args, **options):
        from tests.learning.audit_cases import CASES

        figures = audit_eval_run(cases=CASES)
        if options["json"]:
            self.stdout.write(json.dumps(figures, indent=2))
            return
        self.stdout.write(
            f"{figures['total']} cases across {', '.join(figures['domains'])} "
            f"({figures['seconds']} s)"
        )
        self.stdout.write(audit_eval_table(figures))
        if options["misses"]:
            for miss in figures["misses"]:
                self.stdout.write(
                    f"- {miss['id']}: expected {miss['expect']}, flagged "
                    f"{miss['flagged'] or 'nothing'}"
                )
                for message in miss["messages"]:
                    self.stdout.write(f"    {message}")
