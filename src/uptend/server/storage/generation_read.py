"""The counters read of every request, straight through the driver on one held connection.

One primary-key read gives both counters (`Counters`): the generation, under which group
plans are remembered, and the credentials counter, under which credentials are.

Through SQLAlchemy's pool the one-row read costs ~600 µs of CPU on SQLite (pool checkout,
greenlets, several aiosqlite thread hops, a rollback on return). Here, on SQLite, it is a
read of one hot page on the event loop itself, with a busy timeout of 0: in WAL mode a
reader waits on no writer, and in the rare case it would (another process holding the file
exclusively), it is refused at once and the read goes to a worker thread that may wait.
The thread hop every read used to take cost ~9 % of the idle check-ins/s. On PostgreSQL it
is one round trip (an autocommit psycopg connection, so no transaction is ever left open).
A lost connection is dropped and opened again at the next read. Counted as a read in
`Database.statements`.
"""

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import psycopg
from sqlalchemy.engine import make_url

from uptend.server.storage.db import Database, configure_sqlite

SQL = "SELECT value, credentials FROM generation WHERE id = 1"


class Counters(NamedTuple):
    generation: int  # what agents should run (publish, group set, retry, schedule)
    credentials: int  # who may call (agent revoke/remove/rotate, token revoke)


def _no_wait(conn: sqlite3.Connection, _record: object) -> None:
    # Only reads: the WAL mode `server run` set is the file's; no PRAGMA that may wait.
    conn.execute("PRAGMA busy_timeout=0")


class _SqliteRead:
    """One sqlite3 connection, used from one thread only.

    Opened at its first read; dropped on an error, and opened again at the next read.
    """

    def __init__(self, path: str, setup: Callable[[sqlite3.Connection, object], None]) -> None:
        self.path = path
        self.setup = setup
        self._conn: sqlite3.Connection | None = None

    def __call__(self) -> Counters:
        if self._conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None)
            self.setup(conn, None)
            self._conn = conn
        try:
            row = self._conn.execute(SQL).fetchone()
        except sqlite3.Error:
            self.close()
            raise
        return Counters(int(row[0]), int(row[1]))

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()


class GenerationRead:
    def __init__(self, db: Database) -> None:
        self.db = db
        url = make_url(db.url)
        self._sqlite = db.dialect == "sqlite"
        path = url.database or ""
        self._now = _SqliteRead(path, _no_wait)  # on the event loop: refused if busy
        self._waiting = _SqliteRead(path, configure_sqlite)  # in the thread: waits if busy
        self._pg_url = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="uptend-generation")
        self.waited = 0  # reads that found the file busy and went to the thread
        self._pg: psycopg.AsyncConnection[tuple[int, int]] | None = None

    async def __call__(self) -> Counters:
        self.db.statements["read"] += 1
        if not self._sqlite:
            return await self._pg_read()
        try:
            return self._now()
        except sqlite3.OperationalError as e:
            if e.sqlite_errorcode not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise
        self.waited += 1
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._waiting)

    async def _pg_read(self) -> Counters:
        if self._pg is None:
            self._pg = await psycopg.AsyncConnection.connect(self._pg_url, autocommit=True)
        try:
            cursor = await self._pg.execute(SQL, prepare=True)
            row = await cursor.fetchone()
        except psycopg.Error:
            await self._pg.close()
            self._pg = None
            raise
        assert row is not None  # the migration inserts the row
        return Counters(int(row[0]), int(row[1]))

    async def close(self) -> None:
        if self._pg is not None:
            await self._pg.close()
            self._pg = None
        self._now.close()
        await asyncio.get_running_loop().run_in_executor(self._thread, self._waiting.close)
        self._thread.shutdown(wait=False)
