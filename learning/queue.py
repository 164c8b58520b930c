"""Hand work to the Django-Q2 queue once the current transaction commits. Stages hand
work *back* up the flow this way (an edit re-audits a candidate, a new version
re-audits the playbook's pending ones) by the task's dotted name, never by importing
the stage."""

from django.db import transaction


def task_enqueue_on_commit(
    func: str, *args, task_name: str = "", group: str = ""
) -> None:
    """Queue `func` (a dotted path, e.g. "learning.audit_tasks.candidate_audit_task")
    with `args` after the commit; immediately when no transaction is open."""
    from django_q.tasks import async_task

    options = {}
    if task_name:
        options["task_name"] = task_name
    if group:
        options["group"] = group
    transaction.on_commit(lambda: async_task(func, *args, **options))
