"""python manage.py import_runs PATH --format FORMAT (--token T | --namespace NS)"""

import sys
import time

from django.core.management.base import BaseCommand, CommandError

from learning.access import token_lookup
from learning.importers import FORMATS, ImportFileError, ImportReport, runs_import
from learning.services.tokens import namespace_get_or_create


class ProgressBar:
    """A one-line progress bar on stderr (redrawn in place on a terminal)."""

    def __init__(self, stream, width: int = 30):
        self.stream, self.width = stream, width
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.started = time.monotonic()
        self.last_line = ""
        self.last_done = -1

    def __call__(self, report: ImportReport, total: int) -> None:
        done = report.done
        if done == self.last_done:
            return
        self.last_done = done
        filled = int(self.width * done / total) if total else self.width
        rate = done / max(time.monotonic() - self.started, 1e-6)
        line = (
            f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} records "
            f"({rate:.0f}/s)  created {report.created}  existing {report.existing}  "
            f"rejected {len(report.rejected)}"
        )
        self.last_line = line
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.last_line:
            self.stream.write("\n")
            self.stream.flush()


class Command(BaseCommand):
    help = (
        "Import runs from a file (optionally .gz): tau-bench trajectories, OpenAI chat "
        "JSONL, JSONL run payloads, SWE-agent .traj files (a file or a folder, searched "
        "recursively) or a ReAct text log. Idempotent: a re-run counts stored runs as "
        "existing."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--format", dest="fmt", choices=FORMATS, required=True)
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument(
            "--token", help="an API token: its namespace, its name as the agent"
        )
        who.add_argument("--namespace", help="a namespace slug (created if needed)")
        parser.add_argument("--agent", help="agent name for runs that name none")
        parser.add_argument(
            "--task-type",
            default=None,
            help=(
                "task_type of the runs (default: airline for tau-bench, swe-agent for "
                "swe-agent, react for react-log)"
            ),
        )
        parser.add_argument(
            "--status",
            choices=["success", "failure", "partial"],
            default="",
            help=(
                "outcome of runs whose record holds no verdict (swe-agent: 'submitted' "
                "is not 'resolved', so they are partial unless you say otherwise)"
            ),
        )
        parser.add_argument("--batch-size", type=int, default=50)
        parser.add_argument(
            "--limit", type=int, help="import at most this many records"
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(
        self,
        *args,
        path,
        fmt,
        token,
        namespace,
        agent,
        task_type,
        status,
        batch_size,
        limit,
        no_progress,
        **options,
    ):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        if token:
            api_token = token_lookup(token)
            if api_token is None:
                raise CommandError("invalid or revoked token")
            ns, default_agent = api_token.namespace, agent or api_token.name
        else:
            ns = namespace_get_or_create(slug=namespace)
            default_agent = agent or f"import-{fmt}"
        progress = None if no_progress else ProgressBar(self.stderr._out)
        try:
            report = runs_import(
                path=path,
                fmt=fmt,
                namespace=ns,
                agent=default_agent,
                batch_size=batch_size,
                limit=limit,
                domain=task_type,
                status=status,
                progress=progress,
            )
        except ImportFileError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            if progress:
                progress.close()
        for item in report.rejected:
            self.stdout.write(f"rejected {item.where}: {item.reason}")
        self.stdout.write(
            f"Imported {path} into namespace '{ns.slug}': {report.created} created, "
            f"{report.existing} existing, {len(report.rejected)} rejected "
            f"(of {report.read} records)."
        )
        if report.without_outcome:
            self.stdout.write(
                f"{report.without_outcome} of them have no outcome (no status, no "
                "score): stored as running, they are not reflected until completed "
                "(POST /api/v1/runs/{id}/complete/) or given a status."
            )
        if report.rejected:
            sys.exit(1)
