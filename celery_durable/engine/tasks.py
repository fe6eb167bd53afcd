"""Tasks: what an orchestrator yields and waits on (activities, timers, events, when_all/when_any)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from celery_durable.errors import DurableError, TaskFailedError

T = TypeVar("T")


class Task(Generic[T]):
    """A durable task. Yield it from an orchestrator to wait for it; tasks compare by identity."""

    def __init__(self) -> None:
        self._complete = False
        self._result: Any = None
        self._exception: TaskFailedError | None = None
        self._parents: list[CompositeTask[Any]] = []

    @property
    def is_complete(self) -> bool:
        return self._complete

    @property
    def is_failed(self) -> bool:
        return self._exception is not None

    def get_result(self) -> T:
        """The task's result; raises TaskFailedError if it failed, DurableError if not complete."""
        if not self._complete:
            raise DurableError("the task is not complete yet: yield it before reading its result")
        if self._exception is not None:
            raise self._exception
        result: T = self._result
        return result

    def get_exception(self) -> TaskFailedError | None:
        """The TaskFailedError the task failed with, or None."""
        return self._exception

    def _succeed(self, result: Any) -> None:
        if self._complete:
            return
        self._complete, self._result = True, result
        self._notify()

    def _fail(self, exception: TaskFailedError) -> None:
        if self._complete:
            return
        self._complete, self._exception = True, exception
        self._notify()

    def _notify(self) -> None:
        for parent in self._parents:
            parent._on_child_complete(self)


class CompletableTask(Task[T]):
    """A task completed by one history event: an activity, timer, sub-orchestration or event."""

    def __init__(self, description: str) -> None:
        super().__init__()
        self.description = description

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}>"


class CompositeTask(Task[T]):
    """A task made of other tasks."""

    def __init__(self, tasks: Sequence[Task[Any]]) -> None:
        super().__init__()
        tasks = list(tasks)
        for task in tasks:
            if not isinstance(task, Task):
                raise TypeError(f"when_all/when_any take tasks, got {type(task).__name__}")
            task._parents.append(self)
        self.children = tasks

    def _on_child_complete(self, child: Task[Any]) -> None:
        raise NotImplementedError


class WhenAllTask(CompositeTask[list[Any]]):
    """Completes with every child's result, in order; fails as soon as one child fails."""

    def __init__(self, tasks: Sequence[Task[Any]]) -> None:
        super().__init__(tasks)
        # counted, not re-scanned per completion: a fan-out of N stays O(N), not O(N^2)
        self._pending = sum(not task.is_complete for task in self.children)
        for task in self.children:
            if task.is_failed:
                exc = task.get_exception()
                assert exc is not None
                self._fail(exc)
                return
        self._succeed_when_all_done()

    def _on_child_complete(self, child: Task[Any]) -> None:
        self._pending -= 1
        exc = child.get_exception()
        if exc is not None:
            self._fail(exc)
        else:
            self._succeed_when_all_done()

    def _succeed_when_all_done(self) -> None:
        if self._pending == 0:
            self._succeed([task._result for task in self.children])


class WhenAnyTask(CompositeTask[Task[Any]]):
    """Completes with the first child task that completes (succeeded or failed)."""

    def __init__(self, tasks: Sequence[Task[Any]]) -> None:
        super().__init__(tasks)
        if not self.children:
            raise ValueError("when_any needs at least one task")
        for task in self.children:
            if task.is_complete:
                self._succeed(task)
                break

    def _on_child_complete(self, child: Task[Any]) -> None:
        self._succeed(child)


def success_completes(task: Task[Any], target: Task[Any]) -> bool:
    """Whether ``task`` succeeding now would complete ``target`` (``task`` itself, or a
    when_all / when_any built on it that ``target`` is or is part of). Conservative: any task
    type it does not know counts as completed."""
    frontier = [task]
    while frontier:
        current = frontier.pop()
        if current is target:
            return True
        for parent in current._parents:
            if parent.is_complete or (isinstance(parent, WhenAllTask) and parent._pending > 1):
                continue  # a when_all that still waits for other children stays open
            frontier.append(parent)
    return False


def when_all(tasks: Sequence[Task[Any]]) -> WhenAllTask:
    """A task that completes when all ``tasks`` have completed, with the list of their results."""
    return WhenAllTask(tasks)


def when_any(tasks: Sequence[Task[Any]]) -> WhenAnyTask:
    """A task that completes when the first of ``tasks`` completes, with that task as result."""
    return WhenAnyTask(tasks)
