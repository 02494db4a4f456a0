"""Queries on the schedule: each group's maintenance windows, the freeze, critical heads.

Core statements, so the check-in path (a Core connection) and the admin services (a
session) read them alike.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, and_, delete, insert, select

from uptend.server.storage.db import AsyncConnection, Tx
from uptend.server.storage.tables import (
    ChannelHeadRow,
    FreezeRow,
    GroupAppRow,
    GroupWindowRow,
    ReleaseRow,
)

WINDOWS = cast(Table, GroupWindowRow.__table__)
FREEZE = cast(Table, FreezeRow.__table__)
Conn = AsyncConnection | Tx


@dataclass(frozen=True, slots=True)
class StoredFreeze:
    starts_at: datetime | None
    until: datetime
    reason: str
    set_at: datetime


async def windows_of(conn: Conn, groups: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Group -> its window specs in the order given (only groups that have windows)."""
    stmt = select(WINDOWS.c.group, WINDOWS.c.spec).order_by(WINDOWS.c.group, WINDOWS.c.position)
    if groups is not None:
        stmt = stmt.where(WINDOWS.c.group.in_(groups))
    out: dict[str, list[str]] = {}
    for group, spec in await conn.execute(stmt):
        out.setdefault(group, []).append(spec)
    return out


async def set_windows(tx: Tx, group: str, specs: Sequence[str]) -> None:
    await tx.execute(delete(WINDOWS).where(WINDOWS.c.group == group))
    if specs:
        rows = [{"group": group, "position": i, "spec": s} for i, s in enumerate(specs)]
        await tx.execute(insert(WINDOWS), rows)


async def freeze(conn: Conn) -> StoredFreeze | None:
    stmt = select(FREEZE.c.starts_at, FREEZE.c.until, FREEZE.c.reason, FREEZE.c.set_at)
    row = (await conn.execute(stmt.where(FREEZE.c.id == 1))).first()
    return None if row is None else StoredFreeze(row[0], row[1], row[2], row[3])


async def set_freeze(tx: Tx, value: StoredFreeze) -> None:
    row = await tx.get(FreezeRow, 1)
    if row is None:
        row = FreezeRow(id=1, until=value.until, set_at=value.set_at)
        tx.add(row)
    row.starts_at, row.until, row.reason, row.set_at = (
        value.starts_at,
        value.until,
        value.reason,
        value.set_at,
    )
    await tx.flush()


async def clear_freeze(tx: Tx) -> bool:
    """Remove the freeze; whether there was one."""
    result = await tx.execute(delete(FREEZE).where(FREEZE.c.id == 1))
    return bool(getattr(result, "rowcount", 0))


async def critical_heads(conn: Conn, group: str) -> set[str]:
    """The group's apps whose channel head is a critical release."""
    stmt = (
        select(GroupAppRow.app)
        .join(
            ChannelHeadRow,
            and_(
                ChannelHeadRow.app == GroupAppRow.app, ChannelHeadRow.channel == GroupAppRow.channel
            ),
        )
        .join(
            ReleaseRow,
            and_(
                ReleaseRow.app == ChannelHeadRow.app, ReleaseRow.version == ChannelHeadRow.version
            ),
        )
        .where(GroupAppRow.group == group, ReleaseRow.critical.is_(True))
    )
    return set((await conn.execute(stmt)).scalars())
