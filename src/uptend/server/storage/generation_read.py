"""The counters read of every request, straight through the driver on one held connection.

One primary-key read gives both counters (`Counters`): the generation, under which group
plans are remembered, and the credentials counter, under which credentials are.

Through SQLAlchemy's pool the one-row read costs ~600 µs of CPU on SQLite (pool checkout,
greenlets, several aiosqlite thread hops, a rollback on return); here it is one thread hop
on SQLite (a sqlite3 connection owned by one worker thread) and one round trip on PostgreSQL
(an autocommit psycopg connection, so no transaction is ever left open). A lost connection
is dropped and opened again at the next read. Counted as a read in `Database.statements`.
"""

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import psycopg
from sqlalchemy.engine import make_url

from uptend.server.storage.db import Database, configure_sqlite

SQL = "SELECT value, credentials FROM generation WHERE id = 1"


class Counters(NamedTuple):
    generation: int  # what agents should run (publish, group set, retry, schedule)
    credentials: int  # who may call (agent revoke/remove/rotate, token revoke)


class GenerationRead:
    def __init__(self, db: Database) -> None:
        self.db = db
        url = make_url(db.url)
        self._sqlite_path = url.database if db.dialect == "sqlite" else None
        self._pg_url = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="uptend-generation")
        self._sqlite: sqlite3.Connection | None = None
        self._pg: psycopg.AsyncConnection[tuple[int, int]] | None = None

    async def __call__(self) -> Counters:
        self.db.statements["read"] += 1
        if self._sqlite_path is not None:
            return await asyncio.get_running_loop().run_in_executor(self._thread, self._sqlite_read)
        return await self._pg_read()

    def _sqlite_read(self) -> Counters:  # in the one worker thread
        if self._sqlite is None:
            conn = sqlite3.connect(self._sqlite_path or "", isolation_level=None)
            configure_sqlite(conn, None)
            self._sqlite = conn
        try:
            row = self._sqlite.execute(SQL).fetchone()
        except sqlite3.Error:
            self._sqlite.close()
            self._sqlite = None
            raise
        return Counters(int(row[0]), int(row[1]))

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
        if self._sqlite is not None:
            conn, self._sqlite = self._sqlite, None
            await asyncio.get_running_loop().run_in_executor(self._thread, conn.close)
        self._thread.shutdown(wait=False)
