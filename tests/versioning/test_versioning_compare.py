"""compare_versions, VersioningOptions.accepts / rejects, version queues and ``Version``."""

from __future__ import annotations

import pytest

from celery_durable import VersionFailureStrategy, VersioningOptions, VersionMatchStrategy
from celery_durable.versioning import Version, compare_versions, version_key, version_queue

NONE, STRICT, OLDER = (VersionMatchStrategy.NONE, VersionMatchStrategy.STRICT,
                       VersionMatchStrategy.CURRENT_OR_OLDER)


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("1", "1", 0),
    ("1.0", "1", 0),              # missing components are zeros
    ("1.0.0", "1", 0),
    ("01.2", "1.2", 0),           # numbers, not digits
    ("1.9", "1.10", -1),          # numerically, where strings would say 1
    ("1.10", "1.9", 1),
    ("2", "10", -1),
    ("1.2.3", "1.2", 1),
    ("0.9", "1", -1),
    ("beta", "alpha", 1),         # not dotted numbers: as strings
    ("1.0-rc1", "1.0", 1),
    ("2024-06", "2024-05", 1),
    ("10", "9a", -1),             # one side not dotted: as strings ("1" < "9")
    (None, "0", -1),              # unversioned sorts before every version
    ("0", None, 1),
    (None, None, 0),
])
def test_compare_versions(a: str | None, b: str | None, expected: int) -> None:
    assert compare_versions(a, b) == expected
    assert compare_versions(b, a) == -expected


@pytest.mark.parametrize(("strategy", "worker", "instance", "accepted"), [
    (NONE, "2", "1", True),
    (NONE, "2", "3", True),
    (NONE, "2", None, True),
    (NONE, None, "3", True),
    (STRICT, "2", "2", True),
    (STRICT, "2", "2.0", True),
    (STRICT, "2", "1", False),
    (STRICT, "2", "3", False),
    (STRICT, "2", None, False),
    (OLDER, "2", "1", True),
    (OLDER, "2", "2", True),
    (OLDER, "2", None, True),
    (OLDER, "2", "2.0.1", False),
    (OLDER, "1.10", "1.9", True),
    (OLDER, "1.9", "1.10", False),
])
def test_accepts(strategy: VersionMatchStrategy, worker: str | None, instance: str | None,
                 accepted: bool) -> None:
    for failure in VersionFailureStrategy:
        options = VersioningOptions(version=worker, match_strategy=strategy,
                                    failure_strategy=failure)
        assert options.accepts(instance) is accepted
        assert options.rejects(instance) is (not accepted and
                                             failure is VersionFailureStrategy.REJECT)
        assert options.rejects_some is (strategy is not NONE and
                                        failure is VersionFailureStrategy.REJECT)


def test_without_options_every_version_runs() -> None:
    options = VersioningOptions()
    assert all(options.accepts(v) for v in (None, "0", "1", "999.1", "x"))
    assert not options.rejects_some


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="set VersioningOptions\\(version=...\\)"):
        VersioningOptions(match_strategy=STRICT)
    with pytest.raises(ValueError, match="non-empty string"):
        VersioningOptions(version="")
    with pytest.raises(ValueError, match="non-empty string"):
        VersioningOptions(default_version=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        VersioningOptions(version="1", match_strategy="LOOSE")  # type: ignore[arg-type]
    named = VersioningOptions(version="1", match_strategy="STRICT",  # type: ignore[arg-type]
                              failure_strategy="REJECT")  # type: ignore[arg-type]
    assert named.match_strategy is STRICT
    assert named.failure_strategy is VersionFailureStrategy.REJECT


def test_versions_that_compare_equal_share_a_queue() -> None:
    assert version_key("1.0.0") == version_key("1") == version_key("01.0") == "1"
    assert version_key("2.1.0") == "2.1"
    assert version_key("0.0") == "0"
    assert version_key("1.0-rc1") == "1.0-rc1"
    assert version_queue("celery", "1.2.0") == "celery.v1.2"
    assert version_queue("orders", "blue") == "orders.vblue"


def test_version_orders_as_dotted_numbers() -> None:
    version = Version("1.10")
    assert isinstance(version, str) and version == "1.10"
    assert version > "1.9" and version >= "1.9" and version >= "1.10.0"
    assert version < "2" and version <= "1.10" and not version < "1.10"
    assert version > None  # noqa: E711  (unversioned is older than every version)
    assert "1.9" < version  # noqa: SIM300  (str defers to the subclass's reflected operator)
    assert sorted(map(Version, ["1.10", "1.9", "1.0.1"])) == ["1.0.1", "1.9", "1.10"]
    assert {version: 1}["1.10"] == 1  # hashing and equality stay those of str
    with pytest.raises(TypeError):
        _ = version < 2  # type: ignore[operator]
