"""``recover`` forgets the wake-up claims of the instances it recovers.

A claim (``Store.request_wakeup``) says "a wake-up message is on its way": whoever delivers an
event while another worker holds the instance sends no second one. When the broker has lost that
message, the claim is stale: an episode that ran inline (which does not release claims) may
have drained the inbox meanwhile, so ``recover`` sees nothing to wake, and every later event
delivered under contention was left to the sweeper (forever, with the sweeper off). Found by the
lost-message test (``tests/reliability/test_lost_messages.py``) on RabbitMQ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery

from celery_durable import Durable
from celery_durable.runtime import recovery


def test_recover_forgets_a_claim_whose_wake_up_was_lost(tmp_path: Path) -> None:
    app = Celery("recover-claims", broker="memory://", set_as_current=False)
    app.conf.durable_sweeper_enabled = False
    durable = Durable(app, store_url=f"sqlite:///{tmp_path / 'store.sqlite3'}")

    @durable.orchestrator(name="claims.wait")
    def wait(ctx: Any, _: Any) -> Any:
        return (yield ctx.wait_for_external_event("go"))

    store = durable.store
    iid = durable.client.schedule_new_orchestration("claims.wait")
    assert durable.runner.run(iid, wait=True)  # started; waits for "go"; no claim left
    assert store.request_wakeup(iid)  # a wake-up is claimed and sent ... and the broker loses it
    assert not store.request_wakeup(iid)  # (coalesced: the lost one is assumed on its way)
    assert store.inbox_size(iid) == 0  # an inline episode drained the inbox meanwhile

    recovery.recover(durable)

    assert store.request_wakeup(iid), "a wake-up claim outlived recover: the next one is lost"
    store.dispose()


def test_a_dry_run_keeps_the_claims(tmp_path: Path) -> None:
    app = Celery("recover-claims-dry", broker="memory://", set_as_current=False)
    app.conf.durable_sweeper_enabled = False
    durable = Durable(app, store_url=f"sqlite:///{tmp_path / 'store.sqlite3'}")

    @durable.orchestrator(name="claims.wait_dry")
    def wait(ctx: Any, _: Any) -> Any:
        return (yield ctx.wait_for_external_event("go"))

    iid = durable.client.schedule_new_orchestration("claims.wait_dry")
    assert durable.runner.run(iid, wait=True)
    assert durable.store.request_wakeup(iid)
    recovery.recover(durable, dry_run=True)
    assert not durable.store.request_wakeup(iid)
    durable.store.dispose()
