"""Django-Q2 tasks: thin callers of the reflection services (load by id, call, return
a small summary for the task result)."""

from learning.services import batch, reflection, relearning, schedules


def run_reflect_task(run_id: str, force: bool = False) -> dict:
    result = reflection.run_reflect(run_id=run_id, force=force)
    return {"run": run_id, "reflection": getattr(result, "pk", None)}


def reflection_fanout_task(run_ids: list[str]) -> dict:
    """A set of runs reflected in one task (the name predates sets: queued tasks of
    earlier versions still find it)."""
    return reflection.runs_reflect(run_ids=run_ids)


def reflection_sweep_task() -> dict:
    return reflection.reflection_sweep()


def batch_reflect_task(
    namespace_id: int | None = None, task_type: str | None = None
) -> dict:
    if namespace_id is not None and task_type is not None:
        made = batch.batch_reflect(namespace_id=namespace_id, task_type=task_type)
        return {"reflection": getattr(made, "pk", None)}
    return batch.batch_reflect_due()


def relearning_task(limit: int = 20) -> dict:
    return relearning.relearning_process(limit=limit)


def task_results_prune_task() -> dict:
    return {"deleted": schedules.task_results_prune()}
