"""Queries on agent labels: read them for many agents at once, change them, filter by them.

The API for whoever needs labels (the fleet view, rollout caps per label, commands by label):
`labels_of(conn, agent_ids)` in one query, `having(key, value)` as a WHERE clause on
`agents.id` (served by the (key, value) index).
"""

from collections.abc import Mapping, Sequence
from typing import cast

from sqlalchemy import ColumnElement, Table, delete, insert, select

from uptend.server.storage.db import AsyncConnection, Tx
from uptend.server.storage.tables import AgentLabelRow, AgentRow

LABELS = cast(Table, AgentLabelRow.__table__)
Conn = AsyncConnection | Tx


async def labels_of(conn: Conn, agent_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    """Agent id -> its labels (key -> value, in key order), for each of `agent_ids`."""
    out: dict[str, dict[str, str]] = {a: {} for a in agent_ids}
    if not agent_ids:
        return out
    stmt = (
        select(LABELS.c.agent_id, LABELS.c.key, LABELS.c.value)
        .where(LABELS.c.agent_id.in_(list(agent_ids)))
        .order_by(LABELS.c.agent_id, LABELS.c.key)
    )
    for agent_id, key, value in await conn.execute(stmt):
        out[agent_id][key] = value
    return out


async def change(
    tx: Tx, agent_id: str, sets: Mapping[str, str], removes: Sequence[str] = ()
) -> None:
    """Set `sets` (replacing a key's value) and remove the keys in `removes`."""
    gone = [*sets, *removes]
    if gone:
        await tx.execute(
            delete(LABELS).where(LABELS.c.agent_id == agent_id, LABELS.c.key.in_(gone))
        )
    if sets:
        rows = [{"agent_id": agent_id, "key": k, "value": v} for k, v in sets.items()]
        await tx.execute(insert(LABELS), rows)


def having(key: str, value: str) -> ColumnElement[bool]:
    """A WHERE clause on AgentRow: the agent has label key=value."""
    ids = select(LABELS.c.agent_id).where(LABELS.c.key == key, LABELS.c.value == value)
    return AgentRow.id.in_(ids)
