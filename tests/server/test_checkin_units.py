"""The check-in path's parts without a server: the listening socket, the generation reader
and its driver-level read, the bounded caches, the pure directive decision."""

import asyncio
import gc
import socket
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import psycopg
import pytest
from sqlalchemy import create_engine, text

from uptend.cli.server import listening_socket
from uptend.server.cache import AppPlan, Bounded, ByGeneration, Caller, GroupPlan, Known, Memory
from uptend.server.generation import GenerationReader
from uptend.server.services.context import Context
from uptend.server.services.directives import directives_for, plan_for
from uptend.server.storage.db import Database, migrate, sqlite_url
from uptend.server.storage.generation_read import Counters, GenerationRead


async def _accepted_nodelay(sock: socket.socket) -> int:
    """TCP_NODELAY of the socket asyncio accepted from `sock`, as uvicorn serves it."""
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def accepted(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn: socket.socket = writer.get_extra_info("socket")
        seen.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(accepted, sock=sock)
    async with server:
        _reader, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            writer.close()


def _loops() -> list[Callable[[], asyncio.AbstractEventLoop]]:
    """The loops uvicorn may serve on: its "auto" picks uvloop where it is installed."""
    import uvloop

    return [asyncio.new_event_loop, uvloop.new_event_loop]


@pytest.mark.parametrize("loop_factory", _loops(), ids=["asyncio", "uvloop"])
def test_accepted_connections_get_tcp_nodelay(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        assert runner.run(_accepted_nodelay(listening_socket("127.0.0.1", 0))) != 0


def test_a_protocol_0_socket_would_not_get_it() -> None:
    """The control: the old socket (protocol 0) shows the test can see the difference."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    assert asyncio.run(_accepted_nodelay(sock)) == 0


def test_a_request_never_shares_a_read_begun_before_it_arrived() -> None:
    async def scenario() -> tuple[list[int], int]:
        value = 1
        pending: list[asyncio.Future[None]] = []  # one per read in flight, released by the test
        started = asyncio.Event()

        async def read() -> int:
            seen = value
            pending.append(asyncio.get_running_loop().create_future())
            started.set()
            await pending[-1]
            return seen

        async def until(count: int) -> None:
            await started.wait()
            started.clear()
            assert len(pending) == count

        reader = GenerationReader(read)
        early = asyncio.create_task(reader.current())
        await until(1)  # the first read is in flight (it saw value 1) ...
        value = 2  # ... when a change commits; then three requests arrive
        late = [asyncio.create_task(reader.current()) for _ in range(3)]
        for _ in range(3):
            await asyncio.sleep(0)
        pending[0].set_result(None)  # the first read ends; the next starts for the late three
        await until(2)
        pending[1].set_result(None)
        return [await early] + [await t for t in late], len(pending)

    results, reads = asyncio.run(scenario())
    assert results == [1, 2, 2, 2]  # the late ones saw the change ...
    assert reads == 2  # ... with one read between them


def test_a_failed_read_fails_its_waiters_and_the_next_read_runs() -> None:
    async def scenario() -> int:
        calls = 0

        async def read() -> int:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise OSError("database away")
            return 7

        reader = GenerationReader(read)
        with pytest.raises(OSError, match="database away"):
            await reader.current()
        return await reader.current()

    assert asyncio.run(scenario()) == 7


def test_caches_are_bounded_and_forget_on_a_new_generation() -> None:
    bounded: Bounded[str, int] = Bounded(2)
    for key, value in (("a", 1), ("b", 2), ("c", 3)):
        bounded.put(key, value)
    assert (bounded.get("a"), bounded.get("b"), bounded.get("c"), len(bounded)) == (None, 2, 3, 2)

    cache: ByGeneration[str, int] = ByGeneration(10)
    cache.put(5, "x", 1)
    assert cache.get(5, "x") == 1
    assert cache.get(6, "x") is None  # a newer generation: not trusted
    cache.put(4, "y", 2)  # read before a change already seen: not kept
    assert cache.get(5, "y") is None
    cache.put(6, "z", 3)
    assert (cache.get(6, "z"), cache.get(6, "x"), len(cache)) == (3, None, 1)


NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_remembered_agents_give_back_what_was_put_and_forget_on_a_new_generation() -> None:
    memory = Memory()
    caller = Caller(actor="agent:web-1", agent_id="a1", group="default", rotating=True)
    admin = Caller(actor="admin#3", token_id=3, expires_at=NOW)
    memory.credentials.put(7, "admin", admin)
    assert memory.credentials.get(7, "admin") == admin  # every field comes back
    known = Known(digest=b"\x01" * 32, generation=7, installed={"web": "1.0", "db": None})
    memory.credentials.put(7, "digest", caller)
    memory.known.put("a1", known)
    assert (memory.credentials.get(7, "digest"), memory.known.get("a1")) == (caller, known)
    assert memory.credentials.get(8, "digest") is None
    memory.credentials.put(8, "other", caller)
    assert (memory.credentials.get(8, "digest"), len(memory.credentials)) == (None, 1)
    assert memory.credentials.get(8, "other") == caller
    assert memory.known.get("a1") == known  # what agents report outlives generations


def test_remembered_agents_add_no_object_to_a_garbage_collection() -> None:
    """A full collection pauses the event loop for every tracked object it walks."""
    memory = Memory()
    gc.collect()
    tracked = len(gc.get_objects())
    for i in range(5000):
        caller = Caller(actor=f"agent:h{i}", agent_id=f"a{i}", group="default")
        memory.credentials.put(1, f"d{i}", caller)
        memory.credentials.put(1, f"t{i}", Caller(actor=f"admin#{i}", token_id=i, expires_at=NOW))
        memory.known.put(f"a{i}", Known(b"%d" % i, 1, {"web": f"1.{i}", "db": None}))
    gc.collect()
    assert len(gc.get_objects()) - tracked < 10  # the stores' own dicts, not 10,000 entries


def test_directives_name_the_head_target_only_for_the_head() -> None:
    plan = GroupPlan(
        name="g",
        poll_interval_s=30.0,
        auto_update=False,
        apps=(
            AppPlan("a", "stable", "2.0", "a/2.0/a-2.0.tar.gz"),
            AppPlan("b", "stable", None, None),
        ),
        unchanged=b"",
    )
    fresh = directives_for(plan, {}, generation=3, retry=[], now=NOW)
    assert [(d.app, d.version, d.target) for d in fresh.apps] == [
        ("a", "2.0", "a/2.0/a-2.0.tar.gz"),
        ("b", None, None),
    ]
    held = directives_for(plan, {"a": "1.0"}, generation=3, retry=["a"], now=NOW)
    assert (held.apps[0].version, held.apps[0].target) == ("1.0", None)  # it runs 1.0 already
    assert "automatic updates are off" in held.apps[0].reason
    assert (held.retry, held.generation, held.poll_interval_s, held.unchanged) == (
        ["a"],
        3,
        30.0,
        False,
    )


def test_the_generation_read_follows_changes_and_survives_a_lost_connection(
    database_url: str, tmp_path: Path
) -> None:
    """Both counters in one read, each moving on its own."""
    url = database_url or sqlite_url(tmp_path)
    migrate(url)

    def bump(column: str) -> None:
        sql = {
            "value": "UPDATE generation SET value = value + 1",
            "credentials": "UPDATE generation SET credentials = credentials + 1",
        }[column]
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(text(sql))
        finally:
            engine.dispose()

    async def scenario() -> list[Counters]:
        db = Database(url)
        read = GenerationRead(db)
        seen = []
        try:
            seen.append(await read())
            bump("value")
            seen.append(await read())
            if db.dialect == "postgresql":  # the server restarts under us: one read fails ...
                with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as admin:
                    admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                with pytest.raises(psycopg.OperationalError):
                    await read()
            bump("credentials")
            seen.append(await read())  # ... and the next one connects again
            assert db.statements["read"] == (4 if db.dialect == "postgresql" else 3)
        finally:
            await read.close()
            await db.dispose()
        return seen

    assert asyncio.run(scenario()) == [(1, 1), (2, 1), (2, 2)]


def test_check_ins_that_miss_the_plan_together_share_one_read(tmp_path: Path) -> None:
    """After a publish every agent's next check-in misses: one read of the plan, not one each."""
    url = sqlite_url(tmp_path)
    migrate(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO groups VALUES ('default', 60, true)"))
    engine.dispose()

    async def scenario() -> tuple[int, int, int]:
        db = Database(url)
        # what plan_for uses of a Context: the memory and the database (real, migrated)
        ctx = cast(Context, SimpleNamespace(memory=Memory(), db=db))
        try:
            before = db.statements["read"]
            await plan_for(ctx, "default", 1)
            one = db.statements["read"] - before
            plans = await asyncio.gather(*(plan_for(ctx, "default", 2) for _ in range(20)))
            together = db.statements["read"] - before - one
            assert all(p is plans[0] for p in plans)  # the one plan read, for every waiter
            assert not ctx.memory.building  # nothing left behind once it is read
            return one, together, len({id(p) for p in plans})
        finally:
            await db.dispose()

    one, together, distinct = asyncio.run(scenario())
    assert one > 0
    assert together == one
    assert distinct == 1


def test_the_generation_read_never_waits_on_the_event_loop(tmp_path: Path) -> None:
    """A file held exclusively (another process) refuses the loop's read at once: the read
    waits in the worker thread while the loop goes on, and sees the value once let go."""
    url = sqlite_url(tmp_path)
    migrate(url)
    holder = sqlite3.connect(tmp_path / "uptend.db", isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE generation SET value = 7")
    holder.execute("COMMIT")  # in exclusive locking mode the lock stays held after the commit

    async def scenario() -> tuple[Counters, int]:
        db = Database(url)
        read = GenerationRead(db)
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        try:
            pending = asyncio.create_task(read())
            await asyncio.sleep(0.3)  # the file stays held this long, whatever the read does
            assert not pending.done()
            assert ticks >= 10  # the loop ran all along
            holder.close()  # lets the file go (in WAL mode only closing ends exclusive mode)
            value = await asyncio.wait_for(pending, 10)
            return value, read.waited
        finally:
            ticker.cancel()
            await read.close()
            await db.dispose()

    try:
        value, waited = asyncio.run(scenario())
    finally:
        holder.close()
    assert value == Counters(7, 1)
    assert waited == 1
