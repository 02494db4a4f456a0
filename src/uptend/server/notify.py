"""Held long-polls (`POST /api/v1/wait`) and what wakes them: a command, a generation bump.

One `Hub` per server process. A held request is one future in a dict (no thread, no
database connection): a command queued for the agent wakes its futures, a new generation
wakes every one. On SQLite (one process) the wake-ups are in-process calls. On PostgreSQL
each process also holds ONE listening connection (`LISTEN uptend`): a command sent through
any replica is NOTIFY'd in the transaction that stores it ("c AGENT_ID ID"), an operator
change after its commit ("g"). After each (re)connection the hub catches up by sequence
number (command ids above the newest it has seen, and the generation), so a notification
missed while the listener was away loses nothing.

`pending` (the agents with unacknowledged commands) is what the check-in path looks at: a
set lookup, so the idle check-in reads nothing more than before.
"""

import asyncio
import contextlib
import logging

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from uptend.server.generation import GenerationReader
from uptend.server.storage import commands as rows
from uptend.server.storage.db import AsyncConnection, Database, SQLAlchemyError
from uptend.server.storage.generation_read import Counters

log = logging.getLogger("uptend.server")
CHANNEL = "uptend"
RECONNECT_S = (0.1, 5.0)  # the listener's first and longest wait before connecting again


class Hub:
    def __init__(self, db: Database, generation: GenerationReader[Counters]) -> None:
        self.db = db
        self.reader = generation
        self.pending: set[str] = set()
        self.seq = 0  # the newest command id this process has seen
        self.generation = -1  # the newest generation this process has seen
        self.listener_pid: int | None = None  # the PostgreSQL backend of the listener
        self.connected = asyncio.Event()  # the listener is listening (PostgreSQL)
        self.closing = False  # shutting down: held requests answer now, new ones at once
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}
        self._task: asyncio.Task[None] | None = None
        url = make_url(db.url)
        self._pg_url = (
            url.set(drivername="postgresql").render_as_string(hide_password=False)
            if db.dialect == "postgresql"
            else None
        )

    @property
    def held(self) -> int:
        return sum(len(w) for w in self._waiting.values())

    async def start(self) -> None:
        await self._catch_up()
        if self._pg_url is not None:
            self._task = asyncio.create_task(self._listen(self._pg_url))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.wake_all()

    # -- held requests -----------------------------------------------------------------------

    async def wait(self, agent_id: str, held: int | None, current: int, wait_s: float) -> bool:
        """Hold until something changes for the agent (True) or `wait_s` passes (False).

        `held` is the generation of the agent's directives, `current` the one read for this
        request. Nothing awaits between the checks and the registration, so a wake-up after
        them reaches this request and one before them is seen by them.
        """
        if self.closing:
            return False
        if agent_id in self.pending or held != current or self.generation > current:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.setdefault(agent_id, [])
        waiting.append(future)
        try:
            async with asyncio.timeout(wait_s):
                await future
            return not self.closing
        except TimeoutError:
            return False
        finally:
            waiting.remove(future)
            if not waiting:
                self._waiting.pop(agent_id, None)

    def release(self) -> None:
        """At shutdown: answer every held request now (the server waits for them)."""
        self.closing = True
        self.wake_all()

    def wake(self, agent_id: str) -> None:
        for future in self._waiting.get(agent_id, ()):
            if not future.done():
                future.set_result(None)

    def wake_all(self) -> None:
        for agent_id in list(self._waiting):
            self.wake(agent_id)

    # -- what wakes them ---------------------------------------------------------------------

    def commanded(self, agent_id: str, command_id: int) -> None:
        self.pending.add(agent_id)
        self.seq = max(self.seq, command_id)
        self.wake(agent_id)

    async def notify_commands(self, conn: AsyncConnection, queued: list[tuple[str, int]]) -> None:
        """In the transaction that stores them: other replicas hear of them at its commit."""
        if self._pg_url is None:
            return
        for agent_id, command_id in queued:
            await conn.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": CHANNEL, "payload": f"c {agent_id} {command_id}"},
            )

    async def changed(self) -> None:
        """After an operator's change committed: wake all if the generation moved; tell replicas."""
        await self.poke()
        if self._pg_url is not None:
            async with self.db.write() as conn:
                await conn.execute(text("SELECT pg_notify(:c, 'g')"), {"c": CHANNEL})

    async def poke(self) -> None:
        value = (await self.reader.current()).generation
        if value > self.generation:
            self.generation = value
            self.wake_all()

    def _heard(self, payload: str) -> None:
        kind, *rest = payload.split()
        if kind == "c" and len(rest) == 2 and rest[1].isdigit():
            self.commanded(rest[0], int(rest[1]))
        elif kind == "g":
            asyncio.get_running_loop().create_task(self.poke())

    async def _catch_up(self) -> None:
        async with self.db.read() as conn:
            agents, newest = await rows.pending_agents(conn, self.seq)
        for agent_id in agents:
            self.commanded(agent_id, newest)
        self.seq = max(self.seq, newest)
        await self.poke()

    async def _listen(self, url: str) -> None:
        delay = RECONNECT_S[0]
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listener_pid = conn.info.backend_pid
                    await self._catch_up()  # after LISTEN: nothing falls between the two
                    self.connected.set()
                    delay = RECONNECT_S[0]
                    async for notice in conn.notifies():
                        self._heard(notice.payload)
            except (psycopg.Error, OSError, SQLAlchemyError) as e:
                log.warning("lost the notification listener (%s); again in %.1fs", e, delay)
            self.connected.clear()
            self.listener_pid = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_S[1])
