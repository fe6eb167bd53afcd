"""Fixtures of the entity tests: a worker per backend of the matrix (see `entity_cluster`)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from entity_cluster import BACKENDS, Cluster, _cluster  # noqa: E402


@pytest.fixture(scope="module", params=BACKENDS)
def cluster(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with _cluster(request.param, tmp_path_factory.mktemp(request.param)) as c:
        yield c


@pytest.fixture
def pg_redis(tmp_path: Path) -> Iterator[Cluster]:
    with _cluster("postgresql-redis", tmp_path) as c:
        yield c
