"""Orchestrator names: the function's own name by default (durabletask's rule; it is stored with
every instance), so two modules with a same-named orchestrator collide loudly at import, with
the fix in the message; never silently."""

from __future__ import annotations

import types
from typing import Any

import pytest
from celery import Celery

from celery_durable import Durable, orchestrator
from celery_durable.registry import GLOBAL


def _module_function(module: str, name: str = "process") -> Any:
    namespace: dict[str, Any] = {"__name__": module}
    exec(f"def {name}(ctx, _):\n    return 1\n", namespace)  # a function of that module
    fn = namespace[name]
    assert isinstance(fn, types.FunctionType) and fn.__module__ == module
    return fn


@pytest.fixture
def durable() -> Durable:
    return Durable(Celery("names", broker="memory://", set_as_current=False), store_url="sqlite://")


def test_the_default_name_is_the_function_name(durable: Durable) -> None:
    declared = durable.orchestrator(_module_function("shop.orders"))
    assert declared.__durable_name__ == "process"
    assert durable.registry.orchestrator("process").fn.__module__ == "shop.orders"


def test_same_named_orchestrators_of_two_modules_collide_at_import(durable: Durable) -> None:
    durable.orchestrator(_module_function("billing.orchestrators"))
    with pytest.raises(ValueError) as raised:
        durable.orchestrator(_module_function("shipping.orchestrators"))
    message = str(raised.value)
    assert "two orchestrator functions are registered as 'process': " \
           "billing.orchestrators.process and shipping.orchestrators.process" in message
    assert 'give one of them a name of its own: @orchestrator(name="shipping.process")' in message
    assert durable.registry.orchestrator("process").fn.__module__ == "billing.orchestrators"


def test_a_name_of_its_own_resolves_it(durable: Durable) -> None:
    durable.orchestrator(_module_function("billing.orchestrators"))
    durable.orchestrator(_module_function("shipping.orchestrators"), name="shipping.process")
    assert set(durable.registry.orchestrators) >= {"process", "shipping.process"}


def test_a_module_level_orchestrator_collides_with_a_durable_one(durable: Durable) -> None:
    durable.orchestrator(_module_function("app_one.workflows", "collide_here"))
    try:
        with pytest.raises(ValueError, match="two orchestrator functions are registered as "
                                             "'collide_here'"):
            orchestrator(_module_function("app_two.workflows", "collide_here"))
    finally:  # the process-wide list keeps what it took before the Durable refused it
        GLOBAL.orchestrators.pop("collide_here", None)


def test_registering_the_same_function_again_is_fine(durable: Durable) -> None:
    fn = _module_function("shop.orders")
    durable.orchestrator(fn)
    durable.orchestrator(fn)
    assert durable.registry.orchestrator("process").fn is fn
