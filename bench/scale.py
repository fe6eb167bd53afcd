"""scale: what users wait for on a store of a million instances (made by ``bench/million.py``):
one metrics scrape, the dashboard's API calls (over HTTP, against the real Tornado application
in this process), and ``durable list`` (the click command in this process, so the figure is its
queries and printing, without the interpreter's start).

Figure: milliseconds, median and worst of ``--reps`` runs after one warm-up run each.
Targets: a scrape under 200 ms; every dashboard call and ``durable list`` under 300 ms.

Run: ``.venv/bin/python bench/scale.py [--url URL] [--reps 7]`` (default: bench/million.py's
database). It reads only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from celery import Celery  # noqa: E402
from celery.bin.base import CLIContext  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from million import DEFAULT_URL  # noqa: E402

from celery_durable import Durable  # noqa: E402
from celery_durable.cli import durable as durable_group  # noqa: E402
from celery_durable.metrics.source import MetricsSource  # noqa: E402
from celery_durable.ui.auth import BasicAuth  # noqa: E402
from celery_durable.ui.dashboard import Dashboard  # noqa: E402
from celery_durable.ui.server import make_application  # noqa: E402

SCRAPE_LIMIT_MS = 200.0
PAGE_LIMIT_MS = 300.0


def timed(fn: Callable[[], Any], reps: int) -> tuple[float, float]:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times)


def serve_in_thread(dashboard: Dashboard, auth: BasicAuth) -> int:
    """The dashboard's application on a free port, served by a loop in a daemon thread."""
    ready: list[int] = []
    started = threading.Event()

    def run() -> None:
        async def main() -> None:
            server = make_application(dashboard, auth).listen(0, "127.0.0.1")
            ready.append(next(iter(server._sockets.values())).getsockname()[1])
            started.set()
            await asyncio.Event().wait()

        asyncio.run(main())

    threading.Thread(target=run, daemon=True).start()
    started.wait(10)
    return ready[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    app = Celery("scale", broker="memory://")
    durable = Durable(app, store_url=args.url)
    store = durable.store
    total = sum(store.count_by_status().values())
    print(f"store: {total:,} instances ({store!r})")
    rows: list[tuple[str, float, float, float]] = []

    source = MetricsSource(durable, episodes=False)
    with store.statement_count() as count:
        source.scrape()
    queries = len([s for s in count.statements if s.strip().upper() != "BEGIN"])
    rows.append((f"metrics scrape ({queries} statements)", *timed(source.scrape, args.reps),
                 SCRAPE_LIMIT_MS))

    auth = BasicAuth("bench", "bench")
    port = serve_in_thread(Dashboard(durable), auth)
    header = "Basic " + base64.b64encode(b"bench:bench").decode()
    sample = store.query_instances(statuses=["COMPLETED"], limit=1)[0].instance_id
    running = store.query_instances(statuses=["RUNNING"], limit=1)[0].instance_id

    def get(path: str) -> Callable[[], Any]:
        def call() -> Any:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                             headers={"Authorization": header})
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200, path
                return response.read()
        return call

    for label, path in [
        ("GET /api/config", "/api/config"),
        ("GET /api/instances (first page, all)", "/api/instances"),
        ("GET /api/instances?status=RUNNING", "/api/instances?status=RUNNING"),
        ("GET /api/instances?status=FAILED,TERMINATED",
         "/api/instances?status=FAILED,TERMINATED"),
        ("GET /api/instances?name=order", "/api/instances?name=order"),
        ("GET /api/instances?q=0001234 (part of an id: a full scan)", "/api/instances?q=0001234"),
        ("GET /api/instances?created_from=...&created_to=... (a day)",
         "/api/instances?created_from=2026-10-01T00:00:00Z&created_to=2026-10-02T00:00:00Z"),
        ("GET /api/instances/<id>", f"/api/instances/{sample}"),
        ("GET /api/instances/<id>/history", f"/api/instances/{sample}/history"),
        ("GET /api/instances/<id>/timeline", f"/api/instances/{sample}/timeline"),
        ("GET /api/instances/<running id>", f"/api/instances/{running}"),
        ("GET / (the instances page)", "/"),
        ("GET /metrics", "/metrics"),
    ]:
        rows.append((label, *timed(get(path), args.reps),
                     SCRAPE_LIMIT_MS if path == "/metrics" else PAGE_LIMIT_MS))

    runner = CliRunner()
    for cli_args in (["list"], ["list", "--status", "RUNNING"], ["list", "--name", "order"],
                     ["list", "--status", "FAILED", "--limit", "1000"], ["show", sample]):
        def run_cli(cli_args: list[str] = cli_args) -> None:
            result = runner.invoke(durable_group, cli_args,
                                   obj=CLIContext(app=app, no_color=True, workdir=None))
            assert result.exit_code == 0, result.output
        rows.append(("durable " + " ".join(cli_args), *timed(run_cli, args.reps),
                     PAGE_LIMIT_MS))

    print("\n| what | median ms | worst ms | target ms | |\n|---|---|---|---|---|")
    missed = 0
    for label, med, worst, limit in rows:
        ok = med < limit
        missed += not ok
        print(f"| {label} | {med:.1f} | {worst:.1f} | < {limit:.0f} | "
              f"{'met' if ok else '**MISSED**'} |")
    store.dispose()
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
