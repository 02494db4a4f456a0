"""Queries on groups and the apps assigned to them."""

from sqlalchemy import select

from uptend.server.storage.db import Tx
from uptend.server.storage.tables import GroupAppRow, GroupRow


async def get(tx: Tx, name: str) -> GroupRow | None:
    return await tx.get(GroupRow, name)


async def add(tx: Tx, row: GroupRow) -> None:
    tx.add(row)
    await tx.flush()


async def set_app(tx: Tx, group: str, app: str, channel: str) -> None:
    row = await tx.get(GroupAppRow, (group, app))
    if row is None:
        tx.add(GroupAppRow(group=group, app=app, channel=channel))
    else:
        row.channel = channel
    await tx.flush()


async def listing(tx: Tx) -> list[GroupRow]:
    return list(await tx.scalars(select(GroupRow).order_by(GroupRow.name)))


async def apps_of(tx: Tx, groups: list[str]) -> dict[str, list[GroupAppRow]]:
    out: dict[str, list[GroupAppRow]] = {g: [] for g in groups}
    stmt = select(GroupAppRow).where(GroupAppRow.group.in_(groups)).order_by(GroupAppRow.app)
    for row in await tx.scalars(stmt):
        out[row.group].append(row)
    return out
