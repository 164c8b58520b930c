"""Hand work to the Django-Q2 queue. Stages hand work *back* up the flow this way (an
edit re-audits a candidate, a new version re-audits the playbook's pending ones) by
the task's dotted name, never by importing the stage.

Internal tasks (reflection, audits, fan-outs, webhook deliveries) keep their outcome in
the project's own rows, so their *successful* results are not saved by the broker
(`save=False`): saving and pruning a result cost more CPU than a reflection. Failures
are still saved (the retry count lives there); scheduled tasks keep their results,
pruned on a schedule (`learning.services.schedules.task_results_prune`)."""

from django.db import transaction


def task_send(func: str, *args, task_name: str = "", group: str = "") -> str:
    """Queue the internal task `func` (a dotted path) now; its success is not saved."""
    from django_q.tasks import async_task

    options = {"save": False}
    if task_name:
        options["task_name"] = task_name
    if group:
        options["group"] = group
    return async_task(func, *args, **options)


def task_run_here(func: str, *args):
    """Run the task `func` (a dotted path) in this process now, as the worker would:
    a task that can do the next stage itself saves a trip through the broker."""
    from django.utils.module_loading import import_string

    return import_string(func)(*args)


def task_enqueue_on_commit(
    func: str, *args, task_name: str = "", group: str = ""
) -> None:
    """Queue `func` (a dotted path, e.g. "learning.audit_tasks.candidate_audit_task")
    with `args` after the commit; immediately when no transaction is open."""
    transaction.on_commit(
        lambda: task_send(func, *args, task_name=task_name, group=group)
    )
