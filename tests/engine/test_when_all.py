"""``when_all``: its outcome, and the cost of each child's completion (counted, never timed).

A fan-in of N children used to look at every child on each completion: O(N^2) over the fan-out
(6 s of CPU for N = 10,000, in every process whose state replayed it). Each completion must now
cost O(1).
"""

from __future__ import annotations

from typing import Any

import pytest

from celery_durable.engine.failure import FailureDetails
from celery_durable.engine.tasks import CompletableTask, WhenAllTask
from celery_durable.errors import TaskFailedError


class CountedTask(CompletableTask[Any]):
    """Counts how often anyone asks whether it is complete or failed."""

    reads = 0

    @property
    def is_complete(self) -> bool:
        CountedTask.reads += 1
        return self._complete

    @property
    def is_failed(self) -> bool:
        CountedTask.reads += 1
        return self._exception is not None


def failure(message: str) -> TaskFailedError:
    return TaskFailedError(message, FailureDetails(message, "ValueError"))


def test_each_completion_costs_a_constant() -> None:
    n = 2000
    children = [CountedTask(str(i)) for i in range(n)]
    fan_in = WhenAllTask(children)
    CountedTask.reads = 0
    for i, child in enumerate(children):
        child._succeed(i)
    assert fan_in.is_complete and fan_in.get_result() == list(range(n))
    assert CountedTask.reads <= 2 * n, f"{CountedTask.reads} reads for {n} completions"


def test_results_in_order_whatever_the_completion_order() -> None:
    children = [CompletableTask(str(i)) for i in range(5)]
    fan_in = WhenAllTask(children)
    for i in (3, 0, 4, 1):
        children[i]._succeed(i * 10)
        assert not fan_in.is_complete
    children[2]._succeed(20)
    assert fan_in.get_result() == [0, 10, 20, 30, 40]


def test_fails_with_the_first_failure_at_once() -> None:
    children = [CompletableTask(str(i)) for i in range(4)]
    fan_in = WhenAllTask(children)
    children[0]._succeed(0)
    first, second = failure("first"), failure("second")
    children[2]._fail(first)
    assert fan_in.is_failed and fan_in.get_exception() is first
    children[1]._fail(second)
    children[3]._succeed(3)
    assert fan_in.get_exception() is first


def test_children_complete_before_when_all() -> None:
    done = [CompletableTask(str(i)) for i in range(3)]
    for i, task in enumerate(done):
        task._succeed(i)
    assert WhenAllTask(done).get_result() == [0, 1, 2]
    assert WhenAllTask([]).get_result() == []
    failed = [CompletableTask("a"), CompletableTask("b"), CompletableTask("c")]
    error = failure("b failed")
    failed[1]._fail(error)
    fan_in = WhenAllTask(failed)
    assert fan_in.get_exception() is error
    with pytest.raises(TaskFailedError):
        fan_in.get_result()


def test_a_child_listed_twice() -> None:
    child, other = CompletableTask("child"), CompletableTask("other")
    fan_in = WhenAllTask([child, other, child])
    child._succeed("c")
    assert not fan_in.is_complete
    other._succeed("o")
    assert fan_in.get_result() == ["c", "o", "c"]


def test_nested_when_all() -> None:
    leaves = [CompletableTask(str(i)) for i in range(4)]
    inner = [WhenAllTask(leaves[:2]), WhenAllTask(leaves[2:])]
    outer = WhenAllTask(inner)
    for i, leaf in enumerate(leaves):
        leaf._succeed(i)
    assert outer.get_result() == [[0, 1], [2, 3]]
