"""Database engines: SQLite (embedded default, WAL) or PostgreSQL, async for the server.

Migrations run synchronously (Alembic), before the async engine is used.
"""

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from uptend.errors import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"

Tx = AsyncSession
T = TypeVar("T")


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'uptend.db').resolve()}"


def _sync_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.set(drivername="sqlite").render_as_string(hide_password=False)
    if parsed.get_backend_name() == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise ConfigError(
        f"unsupported database URL {parsed.render_as_string()!r}",
        hint="use sqlite:///path/uptend.db or postgresql+psycopg://user@host/db",
    )


def _async_url(url: str) -> str:
    parsed = make_url(_sync_url(url))
    driver = "sqlite+aiosqlite" if parsed.get_backend_name() == "sqlite" else "postgresql+psycopg"
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def configure_sqlite(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=10000")  # first: the next one may have to wait too
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def migrate(url: str) -> None:
    """Bring the database at `url` to the newest schema (idempotent)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    engine = create_engine(_sync_url(url))
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", configure_sqlite)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except OperationalError as e:
        raise ConfigError(
            f"cannot reach the database: {e.orig}", hint="check --database-url"
        ) from None
    finally:
        engine.dispose()


FLUSH = {"uptend_kind": "flush"}  # execution options that mark the batched last-seen write
TOKEN_USE = {"uptend_kind": "token_use"}  # an admin token's last use (at most once a minute)
BACKGROUND = {"uptend_kind": "background"}  # the rollout evaluator's pass (once a second)


def _lower_priority() -> None:
    """Let background writes have the core only when the event loop does not want it.

    Nice is per thread on Linux: 10 above the process's, the thread gets ~10 % of a core the
    loop also wants. Elsewhere the call would set the whole process's, so it is not made.
    """
    if sys.platform == "linux":
        thread = threading.get_native_id()
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + 10)


class WriteTurn:
    """SQLite's one writer at a time, taken in this process in arrival order.

    Without it, a burst of check-ins that write (a release reaching a thousand hosts) waits
    in SQLite's busy handler, which sleeps up to 100 ms between tries and favours newcomers:
    writes of ~1 ms took 50-60 ms each there. The task holding the turn may take it again
    (a write inside its own transaction); other processes on the same file still meet
    SQLite's busy timeout. On PostgreSQL there is no turn: rows are locked, not the database.
    """

    def __init__(self, needed: bool) -> None:
        self.needed = needed
        self._lock = asyncio.Lock()
        self._holder: asyncio.Task[Any] | None = None

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[None]:
        me = asyncio.current_task()
        if not self.needed or self._holder is me:
            yield
            return
        async with self._lock:
            self._holder = me
            try:
                yield
            finally:
                self._holder = None


class Database:
    """The server's handle: one async engine, one session per transaction.

    The check-in path uses Core connections (`read`, `write`): no unit of work, no identity
    map. Bulk background writes go `off_loop`: a synchronous engine in one worker thread, so
    their per-row Python (bind processing of thousands of rows) never holds the event loop.
    Every statement is counted by kind, so tests and the bench count writes rather than
    assume them.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        async_url = _async_url(url)
        # A file has no server to lose the connection to: no ping round trip on SQLite.
        ping = make_url(async_url).get_backend_name() != "sqlite"
        self.engine: AsyncEngine = create_async_engine(async_url, pool_pre_ping=ping)
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", configure_sqlite)
        self.statements: dict[str, int] = {
            "read": 0, "write": 0, "flush": 0, "token_use": 0, "background": 0
        }  # fmt: skip
        event.listen(self.engine.sync_engine, "before_cursor_execute", self._count)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.turn = WriteTurn(self.dialect == "sqlite")
        # One connection, one thread: its writes queue behind each other, never beside.
        self._background = create_engine(_sync_url(url), pool_size=1, pool_pre_ping=ping)
        if self.dialect == "sqlite":
            event.listen(self._background, "connect", configure_sqlite)
        event.listen(self._background, "before_cursor_execute", self._count)
        self._thread = ThreadPoolExecutor(
            1, thread_name_prefix="uptend-db-background", initializer=_lower_priority
        )

    def _count(
        self, _conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        marked = None if context is None else context.execution_options.get("uptend_kind")
        if marked in ("flush", "token_use", "background"):
            kind = marked
        elif statement.lstrip()[:6].upper() == "SELECT":
            kind = "read"
        else:
            kind = "write"
        self.statements[kind] += 1

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """An ORM session in a transaction, committed on success (it may write: a turn)."""
        async with self.turn(), self._sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection for reads (never committed)."""
        async with self.engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection in a transaction, committed on success."""
        async with self.turn(), self.engine.begin() as conn:
            yield conn

    async def off_loop(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in the background thread, in a transaction committed on success.

        The event loop goes on serving requests meanwhile.
        """

        def run() -> T:
            with self._background.begin() as conn:
                return work(conn)

        async with self.turn():
            return await asyncio.get_running_loop().run_in_executor(self._thread, run)

    async def dispose(self) -> None:
        await self.engine.dispose()
        await asyncio.get_running_loop().run_in_executor(self._thread, self._background.dispose)
        self._thread.shutdown(wait=False)


__all__ = [
    "BACKGROUND",
    "FLUSH",
    "TOKEN_USE",
    "AsyncConnection",
    "Database",
    "SQLAlchemyError",
    "Tx",
    "configure_sqlite",
    "migrate",
    "sqlite_url",
]
