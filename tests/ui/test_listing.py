"""The store's listing helpers the dashboard reads through (SQLite; the browser tests use
PostgreSQL): newest-first keyset paging, the id search, counts and children."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from celery_durable.store import NewInstance, Store

T0 = datetime(2026, 5, 1, tzinfo=timezone.utc)


def _store(tmp_path: Path, ids: list[str], parent: str | None = None) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'listing.sqlite3'}")
    for i, iid in enumerate(ids):
        store.create_instance(NewInstance(iid, "o", created_at=T0 + timedelta(seconds=i % 3),
                                          parent_instance_id=parent if i else None), [])
    return store


def test_newest_first_pages_cover_every_instance_once(tmp_path: Path) -> None:
    ids = [f"i{n:02d}" for n in range(10)]
    store = _store(tmp_path, ids)
    seen, after = [], None
    while True:
        page = store.search_instances(limit=3, after=after)
        if not page:
            break
        seen += page
        after = (page[-1].created_at, page[-1].instance_id)
    keys = [(r.created_at, r.instance_id) for r in seen]
    assert keys == sorted(keys, reverse=True) and sorted(r.instance_id for r in seen) == ids
    store.dispose()


def test_id_search_takes_like_wildcards_literally(tmp_path: Path) -> None:
    store = _store(tmp_path, ["a_b", "axb", "a%b", "zzz"])
    assert [r.instance_id for r in store.search_instances(id_contains="a_b")] == ["a_b"]
    assert [r.instance_id for r in store.search_instances(id_contains="%")] == ["a%b"]
    assert store.count_matching_by_status(id_contains="b") == {"PENDING": 3}
    assert store.count_matching_by_status(created_from=T0 + timedelta(seconds=3)) == {}
    store.dispose()


def test_children_of_lists_sub_orchestrations(tmp_path: Path) -> None:
    store = _store(tmp_path, ["root", "root:1", "root:2"], parent="root")
    assert [r.instance_id for r in store.children_of("root")] == ["root:1", "root:2"]
    assert store.children_of("root:1") == []
    store.dispose()
