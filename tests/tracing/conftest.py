"""Fixtures of the tracing tests: this process' span file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

_CONFIGURED: dict[str, Path] = {}


@pytest.fixture
def spans_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """This process' span file (the global TracerProvider is set once per process, with the
    SDK); spans are recorded only during the test."""
    pytest.importorskip("opentelemetry.sdk")
    import span_files

    if "path" not in _CONFIGURED:
        _CONFIGURED["path"] = tmp_path_factory.mktemp("spans") / "in-process.jsonl"
        span_files.configure(_CONFIGURED["path"])
    path = _CONFIGURED["path"]
    path.write_text("")
    span_files.SAMPLER.enabled = True
    try:
        yield path
    finally:
        span_files.SAMPLER.enabled = False
