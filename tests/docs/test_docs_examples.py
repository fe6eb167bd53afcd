"""Every code block of ``docs/`` runs, and shows what the code really does.

``docs_exercisers`` describes the conventions (which exerciser claims which block, how a page
runs). Here:

- `test_every_block_has_one_exerciser`: no block is left unclaimed (or claimed twice), so a new
  block cannot go untested;
- `test_doc_block`: one test per block (and per backend of the pages that run on several); the
  pages themselves run once per test session, several at a time, in `doc_runs`;
- small tests of the parser, the claims and the output matcher.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from docs_exercisers import (
    Block,
    Result,
    Runs,
    all_blocks,
    claimers,
    matches,
    parse_blocks,
    run_page,
    split_messages,
    variants,
)

#: pages run at the same time (each mostly waits on its worker and its programs)
PARALLEL_PAGES = 4
#: the slowest pages first, so that the run ends with short ones
SLOW_FIRST = ["cli.md", "versioning.md", "quickstart.md", "deployment.md",
              "features/errors-and-retries.md", "features/continue-as-new.md",
              "features/timers.md", "features/suspend-resume-terminate-purge.md"]

BLOCKS = all_blocks()
CASES = [(block, variant) for block in BLOCKS for variant in variants(block.page)]


def _case_id(case: tuple[Block, str]) -> str:
    block, variant = case
    suffix = "" if variants(block.page) == ["sqlite-filesystem"] else f"@{variant}"
    return f"{block.id}{suffix}"


def test_every_block_has_one_exerciser() -> None:
    problems = []
    for block in BLOCKS:
        found = claimers(block)
        if len(found) != 1:
            first = block.text.splitlines()[0] if block.text.strip() else ""
            problems.append(f"docs/{block.id} ({block.lang or 'no language'}: {first!r}) is "
                            f"claimed by {len(found)} exercisers {[e.name for e in found]}")
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="session")
def doc_runs(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    """Run the pages that the selected tests need (all of them in a full run), in parallel."""
    wanted: set[tuple[str, str]] = set()
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if getattr(item, "originalname", None) == "test_doc_block" and "case" in params:
            block, variant = params["case"]
            wanted.add((block.page, variant))
    order = {page: i for i, page in enumerate(SLOW_FIRST)}
    jobs = sorted(wanted, key=lambda job: (order.get(job[0], len(order)), job))
    root = tmp_path_factory.mktemp("docs")
    runs = Runs()

    def run(job: tuple[str, str]) -> None:
        page, variant = job
        folder = root / f"{page.replace('/', '_').removesuffix('.md')}-{variant}"
        start = time.monotonic()
        for block_id, result in run_page(page, variant, folder).items():
            runs.results[(block_id, variant)] = result
        runs.seconds[job] = time.monotonic() - start

    start = time.monotonic()
    with ThreadPoolExecutor(PARALLEL_PAGES) as pool:
        list(pool.map(run, jobs))
    total = time.monotonic() - start
    yield runs
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        slowest = sorted(runs.seconds.items(), key=lambda item: -item[1])[:4]
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\ndocs: {len(jobs)} page runs in {total:.0f} s; slowest: " +
                                ", ".join(f"{page}@{variant} {seconds:.0f} s"
                                          for (page, variant), seconds in slowest))


@pytest.mark.e2e
@pytest.mark.parametrize("case", CASES, ids=[_case_id(case) for case in CASES])
def test_doc_block(case: tuple[Block, str], doc_runs: Runs) -> None:
    block, variant = case
    result = doc_runs.results.get((block.id, variant), Result("failed", "the block did not run"))
    if result.outcome == "skipped":
        pytest.skip(result.message)
    assert result.outcome == "passed", f"docs/{block.id} on {variant}:\n{result.message}"


# -- the machinery itself --------------------------------------------------------------------------

PAGE = '''# A page

```python
# demo.py
print("hi")
```

<!-- continues: demo.py -->
```python
print("more")
```

```sh
celery -A demo worker --loglevel INFO  # a worker
python demo.py
```

```text
hi
more
```

```sh
rm -rf /
```

```rust
fn main() {}
```

Some text:

    an indented block
'''


def test_parser_and_claims(tmp_path: Path) -> None:
    blocks = tuple(parse_blocks(PAGE, "demo.md"))
    assert [(b.line, b.lang) for b in blocks] == [(3, "python"), (9, "python"), (13, "sh"),
                                                  (18, "text"), (23, "sh"), (27, "rust"),
                                                  (33, "indented")]
    assert blocks[0].filename == "demo.py" and blocks[1].directive == "continues: demo.py"
    names = [[e.name for e in claimers(b, blocks)] for b in blocks]
    assert names == [["program file"], ["fragment"], ["shell"], ["output"], [], [], []]


def test_matcher() -> None:
    assert matches("a\n...\nz\n", "a\nb\nc\nz\n")
    assert matches("a\n...\n", "a\n")
    assert not matches("a\nz\n", "a\nb\nz\n")
    assert matches("6f4f83b9db62449088041b8146902dd5  RUNNING  2025-11-25 17:10:19",
                   "ba80ffe8abec438ea8d9d210dd2f4c9c  RUNNING  2026-01-02 03:04:05")
    assert not matches("order-1045  RUNNING", "order-1046  RUNNING")
    assert matches('"created_at": "2025-11-25T17:10:19.605770+00:00",',
                   '"created_at": "2026-11-25T17:43:15.681413+00:00",')
    assert not matches("{'n': 1}", "{'n': 2}")


def test_messages_are_split_at_error_names() -> None:
    text = "AError: one\ntwo\nBError: three\n"
    assert split_messages(text) == ["AError: one two", "BError: three"]
