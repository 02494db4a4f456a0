"""The database's background thread (`Database.off_loop`) and the last-seen flush it runs.

Real SQLite and PostgreSQL: the flush is compiled SQL sent straight to the driver, so each
dialect's binding of the timestamps is what is tested, and that it never moves a time back.
"""

import asyncio
import os
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, select, text

from tests.support.pg import fresh_database
from uptend.server.storage import hotpath
from uptend.server.storage.db import Database, WriteTurn, migrate, sqlite_url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = sqlite_url(tmp_path)
        migrate(url)
        yield url
        return
    with fresh_database() as url:
        migrate(url)
        yield url


def _add_agents(conn: Connection, ids: list[str], seen: datetime | None) -> None:
    group = "INSERT INTO groups (name, poll_interval_s, auto_update) VALUES ('g', 60, true)"
    conn.execute(text(group))
    for agent_id in ids:
        conn.execute(
            text(
                'INSERT INTO agents (id, name, "group", credential_hash, enrolled_at, last_seen)'
                " VALUES (:id, :id, 'g', :id, :at, :seen)"
            ),
            {"id": agent_id, "at": datetime(2026, 1, 1, tzinfo=UTC), "seen": seen},
        )


def _seen(conn: Connection) -> dict[str, datetime]:
    rows = conn.execute(select(hotpath.AGENTS.c.id, hotpath.AGENTS.c.last_seen))
    return {row[0]: row[1] for row in rows}


def test_off_loop_runs_in_its_own_thread_and_commits(db_url: str) -> None:
    asyncio.run(_own_thread_and_commits(db_url))


async def _own_thread_and_commits(db_url: str) -> None:
    db = Database(db_url)
    try:
        where = await db.off_loop(lambda conn: threading.get_ident())
        assert where != threading.get_ident()
        await db.off_loop(lambda conn: _add_agents(conn, ["a1"], None))
        assert list(await db.off_loop(_seen)) == ["a1"]  # committed: another transaction sees it

        def fail(conn: Connection) -> None:
            conn.execute(text("UPDATE agents SET id = 'a2'"))  # committed, but for the raise
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            await db.off_loop(fail)
        assert list(await db.off_loop(_seen)) == ["a1"]
    finally:
        await db.dispose()


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice is Linux's")
def test_off_loop_thread_yields_the_core_to_the_event_loop(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    migrate(url)
    asyncio.run(_yields_the_core(Database(url)))


async def _yields_the_core(db: Database) -> None:
    try:
        own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        nice = await db.off_loop(
            lambda conn: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        )
        assert nice == min(own + 10, 19)
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own  # loop's kept
    finally:
        await db.dispose()


def test_flush_writes_every_time_and_never_moves_one_back(db_url: str) -> None:
    asyncio.run(_flush_writes(Database(db_url)))


async def _flush_writes(db: Database) -> None:
    old = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
    newer = old + timedelta(seconds=7, microseconds=250)
    ids = [f"agent{k:03d}" for k in range(300)]
    try:
        await db.off_loop(lambda conn: _add_agents(conn, ids, old))
        never = text("UPDATE agents SET last_seen = NULL WHERE id = 'agent000'")
        await db.off_loop(lambda conn: conn.execute(never))
        before = db.statements["flush"]
        await db.off_loop(lambda conn: hotpath.flush_last_seen(conn, dict.fromkeys(ids, newer)))
        assert db.statements["flush"] == before + 1  # one executemany, counted as the flush
        assert await db.off_loop(_seen) == dict.fromkeys(ids, newer)  # NULL ones too, to the µs
        # An older time (a replica's late flush) leaves the newer one in place.
        await db.off_loop(lambda conn: hotpath.flush_last_seen(conn, {"agent001": old}))
        assert (await db.off_loop(_seen))["agent001"] == newer
    finally:
        await db.dispose()


def test_flush_sql_is_the_one_statement_compiled(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    migrate(url)
    db = Database(url)
    try:
        sql, order, _bind = hotpath._flush_sql(db.engine.dialect)
        assert sql.startswith("UPDATE agents SET last_seen=")
        assert order == ("last_seen", "b_id", "last_seen")
    finally:
        asyncio.run(db.dispose())


def test_sqlite_writers_take_turns_in_arrival_order_and_may_nest() -> None:
    """The turn: one holder at a time, the others in arrival order; its holder may take it
    again (a write inside its own transaction) without waiting on itself."""

    async def scenario() -> list[str]:
        turn = WriteTurn(needed=True)
        order: list[str] = []
        release = asyncio.Event()

        async def first() -> None:
            async with turn():
                order.append("first in")
                async with turn():  # nested in the same task: no deadlock
                    order.append("first nested")
                await release.wait()
                order.append("first out")

        async def later(name: str) -> None:
            async with turn():
                order.append(name)

        holder = asyncio.create_task(first())
        await asyncio.sleep(0)  # `first` takes the turn
        waiters = [asyncio.create_task(later(n)) for n in ("second", "third")]
        await asyncio.sleep(0.05)
        assert order == ["first in", "first nested"]  # the others wait while it holds it
        release.set()
        await asyncio.wait_for(asyncio.gather(holder, *waiters), 5)
        return order

    assert asyncio.run(scenario()) == ["first in", "first nested", "first out", "second", "third"]


def test_postgresql_writers_take_no_turn() -> None:
    async def scenario() -> bool:
        turn = WriteTurn(needed=False)
        async with turn():
            other = asyncio.create_task(_enter(turn))
            return await asyncio.wait_for(other, 5)  # entered while the first still holds it

    assert asyncio.run(scenario())


async def _enter(turn: WriteTurn) -> bool:
    async with turn():
        return True
