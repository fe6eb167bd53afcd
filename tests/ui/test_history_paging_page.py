"""The instance page in a real browser with its Content-Security-Policy on: the history table in
pages, and an automatic refresh skipped while the previous one still runs (issue 16)."""

from __future__ import annotations

from typing import Any

import durable_ui_app as ua
import pytest
from durable_ui_helpers import Setup

pytestmark = pytest.mark.e2e

#: makes every history call of the page take 2.5 s and counts them (a slow server)
SLOW_HISTORY = """
window.__historyCalls = 0;
const realFetch = window.fetch;
window.fetch = async (...args) => {
  if (String(args[0]).includes("/history")) {
    window.__historyCalls += 1;
    await new Promise(resolve => setTimeout(resolve, 2500));
  }
  return realFetch(...args);
};
"""


def _finished(setup: Setup) -> str:
    client = setup.durable.client
    iid = client.schedule_new_orchestration(ua.BROKEN, input="paged")
    client.wait_for_orchestration_completion(iid, timeout=20)
    return iid


def _rows(page: Any) -> list[int]:
    return [int(seq) for seq in page.eval_on_selector_all(
        "#history tbody tr", "rows => rows.map(r => r.dataset.seq)")]


def test_the_history_table_comes_in_pages(setup: Setup, page: Any) -> None:
    iid = _finished(setup)
    seqs = [e.seq for e in setup.durable.client.get_orchestration_history(iid)]
    assert len(seqs) >= 4
    csp: list[str] = []
    page.on("console", lambda msg: "Content Security Policy" in msg.text and csp.append(msg.text))
    page.goto(f"/instances/{iid}?history_limit=1")
    page.wait_for_function("() => Number(document.body.dataset.loaded || 0) >= 1")
    assert _rows(page) == seqs[:1]
    assert page.is_disabled("#history-earlier") and page.is_enabled("#history-later")
    assert page.text_content("#history-info") == f"events {seqs[0]}–{seqs[0]} of {len(seqs)}"
    page.click("#history-later")
    page.wait_for_function(f"() => document.querySelector('#history tbody tr').dataset.seq == "
                           f"'{seqs[1]}'")
    assert _rows(page) == seqs[1:2] and page.is_enabled("#history-earlier")
    page.click("#history-latest")
    page.wait_for_function(f"() => document.querySelector('#history tbody tr:last-child')"
                           f".dataset.seq == '{seqs[-1]}'")
    assert _rows(page) == seqs[-1:] and page.is_disabled("#history-later")
    page.click("#history-first")
    page.wait_for_function(f"() => document.querySelector('#history tbody tr').dataset.seq == "
                           f"'{seqs[0]}'")
    assert page.query_selector("#timeline svg") is not None  # the SVG shows under the CSP
    assert csp == []


def test_a_refresh_is_skipped_while_the_last_one_runs(setup: Setup, page: Any) -> None:
    """The dashboard refreshes every second here (--refresh 1); each load takes 2.5 s."""
    iid = setup.durable.client.schedule_new_orchestration(ua.WAITER, input="slow")
    setup.durable.client.wait_for_orchestration_start(iid, timeout=20)
    page.add_init_script(SLOW_HISTORY)
    page.goto(f"/instances/{iid}")
    page.wait_for_function("() => Number(document.body.dataset.skipped || 0) >= 3",
                           timeout=15_000)
    calls = page.evaluate("window.__historyCalls")
    skipped = page.evaluate("Number(document.body.dataset.skipped)")
    # without skipping, each tick would start another load: calls would track the ticks
    assert calls <= 3 and skipped >= 3, (calls, skipped)
    setup.durable.client.terminate_orchestration(iid)
