"""Shared fixtures: a database URL over SQLite and PostgreSQL, and the fleet harness."""

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.support.fleet import Fleet
from tests.support.pg import fresh_database
from tests.support.slowest import SLOWEST_FIRST

# Property tests run beside servers and agents on two shared cores, and under coverage in
# scripts/test: the default 200 ms deadline per example then fails on load, not on a bug. A
# deadline stays (an example that hangs or goes quadratic still fails), with room for load;
# a test's own @settings (max_examples, deadline=None) builds on this profile.
settings.register_profile(
    "uptend", deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("uptend")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slowest files first (a stable sort: each file keeps its own order)."""
    rank = {path: i for i, path in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("UPTEND_SERVER", "UPTEND_TOKEN", "UPTEND_CRASHPOINT", "UPTEND_CRASHPOINT_LOG"):
        monkeypatch.delenv(name, raising=False)
    # Servers started by a test write last-seen times often, so tests that wait for a
    # check-in by watching last_seen move see every one (the default is every 5 s).
    monkeypatch.setenv("UPTEND_LASTSEEN_FLUSH_S", "0.2")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """'' (the embedded SQLite default) or a fresh PostgreSQL database, dropped afterwards."""
    if request.param == "sqlite":
        yield ""
        return
    with fresh_database() as url:
        yield url


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """A real server process on the embedded default, with helpers to publish and add hosts."""
    with Fleet(tmp_path) as f:
        yield f


@pytest.fixture
def any_db_fleet(tmp_path: Path, database_url: str) -> Iterator[Fleet]:
    """The same, once on SQLite and once on PostgreSQL."""
    with Fleet(tmp_path, database_url=database_url) as f:
        yield f
