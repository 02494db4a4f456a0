"""Rows of `commands`: queued by an operator, handed out at check-in, acknowledged by id."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, func, insert, select, update

from uptend.server.storage.db import AsyncConnection
from uptend.server.storage.labels import having as has_label
from uptend.server.storage.tables import AgentRow, CommandRow

COMMANDS = cast(Table, CommandRow.__table__)
AGENTS = cast(Table, AgentRow.__table__)
PENDING = "pending"

_PENDING_OF = (
    select(COMMANDS.c.id, COMMANDS.c.action, COMMANDS.c.app, COMMANDS.c.expires_at)
    .where(COMMANDS.c.agent_id == bindparam("agent_id"), COMMANDS.c.state == PENDING)
    .order_by(COMMANDS.c.id)
)
_ACK = (
    update(COMMANDS)
    .where(
        COMMANDS.c.id == bindparam("cid"),
        COMMANDS.c.agent_id == bindparam("aid"),
        COMMANDS.c.state == PENDING,
    )
    .values(state=bindparam("new_state"), result=bindparam("new_result"), acked_at=bindparam("at"))
)


async def add(conn: AsyncConnection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert the commands; their ids, in order (one statement per row: ids on both dialects)."""
    ids = []
    for row in rows:
        result = await conn.execute(insert(COMMANDS).values(**row).returning(COMMANDS.c.id))
        ids.append(int(result.scalar_one()))
    return ids


async def pending_of(conn: AsyncConnection, agent_id: str) -> Sequence[Any]:
    return (await conn.execute(_PENDING_OF, {"agent_id": agent_id})).all()


async def expire(conn: AsyncConnection, ids: list[int], now: datetime) -> None:
    await conn.execute(
        update(COMMANDS)
        .where(COMMANDS.c.id.in_(ids), COMMANDS.c.state == PENDING)
        .values(state="expired", result="expired before delivery", acked_at=now)
    )


async def ack(
    conn: AsyncConnection, agent_id: str, acks: list[tuple[int, str, str]], now: datetime
) -> None:
    """Record each (id, state, result) of this agent's pending commands; others are ignored."""
    await conn.execute(
        _ACK,
        [
            {"cid": cid, "aid": agent_id, "new_state": state, "new_result": result, "at": now}
            for cid, state, result in acks
        ],
    )


async def pending_agents(conn: AsyncConnection, after: int = 0) -> tuple[set[str], int]:
    """The agents with pending commands of id > `after`, and the newest command id there is."""
    query = select(COMMANDS.c.agent_id).where(COMMANDS.c.state == PENDING, COMMANDS.c.id > after)
    agents = {r[0] for r in (await conn.execute(query.distinct())).all()}
    newest = await conn.scalar(select(func.max(COMMANDS.c.id)))
    return agents, int(newest or 0)


async def listing(
    conn: AsyncConnection, agent_id: str | None, state: str | None, limit: int
) -> Sequence[Any]:
    """Newest first, with the agent's name; `expired` includes pending (past expiry) ones."""
    query = select(COMMANDS, AGENTS.c.name).join(AGENTS, AGENTS.c.id == COMMANDS.c.agent_id)
    conditions = []
    if agent_id is not None:
        conditions.append(COMMANDS.c.agent_id == agent_id)
    if state == "expired":
        conditions.append(COMMANDS.c.state.in_(["expired", PENDING]))
    elif state is not None:
        conditions.append(COMMANDS.c.state == state)
    if conditions:
        query = query.where(and_(*conditions))
    return (await conn.execute(query.order_by(COMMANDS.c.id.desc()).limit(limit))).all()


async def agents_of_group(conn: AsyncConnection, group: str) -> list[str]:
    query = select(AGENTS.c.id).where(AGENTS.c.group == group, AGENTS.c.revoked_at.is_(None))
    return [r[0] for r in (await conn.execute(query.order_by(AGENTS.c.name))).all()]


async def agents_with_label(conn: AsyncConnection, key: str, value: str) -> list[str]:
    query = select(AGENTS.c.id).where(has_label(key, value), AGENTS.c.revoked_at.is_(None))
    return [r[0] for r in (await conn.execute(query.order_by(AGENTS.c.name))).all()]
