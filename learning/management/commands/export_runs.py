"""Export runs for parametric learning as JSONL: sft, preferences or episodes."""

import sys

from django.core.management.base import BaseCommand, CommandError

from learning.models import Namespace
from learning.services.exports import (
    EXPORT_FORMATS,
    ExportFilterError,
    ExportIncomplete,
    export_filters_parse,
    export_lines,
)


class Command(BaseCommand):
    help = "Export runs of a namespace as JSONL training data (sft, preferences, episodes)."

    def add_arguments(self, parser):
        parser.add_argument("--format", required=True, choices=EXPORT_FORMATS)
        parser.add_argument("--namespace", required=True)
        parser.add_argument("--task-type", default="")
        parser.add_argument("--min-score", default=None)
        parser.add_argument("--max-score", default=None)
        parser.add_argument(
            "--since", default=None, help="date or datetime (created at)"
        )
        parser.add_argument(
            "--until", default=None, help="date or datetime (created at)"
        )
        parser.add_argument("--limit", default=None)
        parser.add_argument(
            "--output", "-o", default="-", help="file path, or - for stdout"
        )

    def handle(self, *args, **options):
        namespace = Namespace.objects.filter(slug=options["namespace"]).first()
        if namespace is None:
            raise CommandError(f"No namespace '{options['namespace']}'.")
        params = {
            "task_type": options["task_type"],
            "min_score": options["min_score"],
            "max_score": options["max_score"],
            "since": options["since"],
            "until": options["until"],
            "limit": options["limit"],
        }
        try:
            filters = export_filters_parse(params=params, format=options["format"])
        except ExportFilterError as exc:
            raise CommandError(str(exc))
        lines = export_lines(
            namespace=namespace, format=options["format"], filters=filters
        )
        count = 0
        try:
            if options["output"] == "-":
                out = self.stdout
                for line in lines:
                    out.write(line, ending="")
                    count += 1
            else:
                with open(options["output"], "w", encoding="utf-8") as handle:
                    for line in lines:
                        handle.write(line)
                        count += 1
        except ExportIncomplete as exc:
            raise CommandError(str(exc)) from exc
        sys.stderr.write(f"exported {count} {options['format']} records\n")
