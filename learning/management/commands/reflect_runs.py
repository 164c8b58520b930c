from django.core.management.base import BaseCommand, CommandError

from learning.models import Namespace, ReflectionStatus, Trajectory
from learning.services import batch, reflection, relearning


class Command(BaseCommand):
    help = (
        "Reflect without a worker: pending runs (default), given runs, a batch over a "
        "task type, or the relearning queue."
    )

    def add_arguments(self, parser):
        parser.add_argument("runs", nargs="*", help="run ids to reflect on (again)")
        parser.add_argument("--namespace", help="namespace slug (default: all)")
        parser.add_argument(
            "--batch", metavar="TASK_TYPE", help="batch-reflect a task type"
        )
        parser.add_argument(
            "--relearn", action="store_true", help="process relearning queue"
        )
        parser.add_argument(
            "--sweep", action="store_true", help="run the pending sweeper"
        )
        parser.add_argument("--limit", type=int, default=500)

    def handle(self, *args, **opts):
        namespace = self._namespace(opts["namespace"])
        if opts["sweep"]:
            self.stdout.write(str(reflection.reflection_sweep()))
        if opts["batch"]:
            self._batch(namespace, opts["batch"])
        if opts["relearn"]:
            result = relearning.relearning_process(
                limit=opts["limit"], namespace=namespace
            )
            self.stdout.write(str(result))
        if opts["runs"]:
            for run_id in opts["runs"]:
                made = reflection.run_reflect(run_id=run_id, force=True)
                self.stdout.write(f"{run_id}: reflection {getattr(made, 'pk', None)}")
        elif not (opts["batch"] or opts["relearn"] or opts["sweep"]):
            self._pending(namespace, opts["limit"])

    def _namespace(self, slug):
        if not slug:
            return None
        namespace = Namespace.objects.filter(slug=slug).first()
        if namespace is None:
            raise CommandError(f"no namespace {slug!r}")
        return namespace

    def _batch(self, namespace, task_type):
        if namespace is None:
            raise CommandError("--batch needs --namespace")
        made = batch.batch_reflect(namespace_id=namespace.pk, task_type=task_type)
        count = made.candidates.count() if made else 0
        self.stdout.write(
            f"batch reflection {getattr(made, 'pk', None)}: {count} candidates"
        )

    def _pending(self, namespace, limit):
        qs = Trajectory.objects.filter(reflection_status=ReflectionStatus.PENDING)
        if namespace is not None:
            qs = qs.filter(namespace=namespace)
        done = 0
        for run_id in qs.order_by("created_at").values_list("pk", flat=True)[:limit]:
            try:
                reflection.run_reflect(run_id=run_id)
                done += 1
            except Exception as exc:  # noqa: BLE001 - recorded on the run; go on
                self.stderr.write(f"{run_id}: {exc}")
        self.stdout.write(f"reflected {done} pending runs")
