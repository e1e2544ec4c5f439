"""Each item's stages as task runs nested under the item's task run.

``StageTasks`` is a ``comfy_gen.pipeline.StageRunner``: the render path calls
``stage("queue", fn)`` at each step (compose, queue, await, validate, refine,
store/upload) and this runner calls ``fn`` inside a small Prefect task, so the
UI shows where an item spent its time and which stage failed. The wrapper only
records: the value and any exception pass straight through (an exception is
re-raised as the same object, so retries and error records see what they
would see without stages), and nothing is serialised or cached.

Each stage is a task run the server has to record, about 5-6 per item: the
flow turns them on only for runs small enough (``comfy_gen.runs.stage_tasks_wanted``).
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed

T = TypeVar("T")

STAGES = ("compose", "queue", "await", "validate", "refine", "store", "upload")


def _call(body: Callable[[], Any]) -> Any:
    return body()


def _never(task: Any, task_run: Any, state: Any) -> bool:
    return False


def _stage_task(name: str) -> Task[..., Any]:
    # retries=1 with a condition that never retries: a stage is never retried on its
    # own (the item is), and Prefect's engine logs its "Task run failed" line with
    # exc_info only for tasks that have retries=0; the Failed state still shows.
    return task(name=name, task_run_name=name, cache_policy=NO_CACHE, persist_result=False,
                log_prints=False, retries=1, retry_condition_fn=_never)(_call)


#: Built once: a Task per stage name (``with_options`` per call would rebuild one each time).
_TASKS: dict[str, Task[..., Any]] = {name: _stage_task(name) for name in STAGES}


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


class StageTasks:
    """Runs each stage as a nested Prefect task run (a ``StageRunner``)."""

    def __call__(self, name: str, fn: Callable[[], T]) -> T:
        stage = _TASKS.get(name)
        if stage is None:
            return fn()
        outcome: dict[str, Any] = {}

        def body() -> Any:
            try:
                outcome["value"] = fn()
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller unchanged
                outcome["error"] = exc
                # A Failed state, not a raise: the item reports the error once, and
                # Prefect logs no traceback for a stage of an expected failure.
                return Failed(message=one_line(exc))
            return Completed()

        stage(body, return_state=True)  # type: ignore[unused-coroutine]  # a sync task: returns its state
        if "error" in outcome:
            raise outcome["error"]
        if "value" not in outcome:  # the stage's task run could not start: run the step itself
            return fn()
        value: T = outcome["value"]
        return value


__all__ = ["STAGES", "StageTasks", "one_line"]
