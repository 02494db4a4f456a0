"""Queries on releases."""

from collections.abc import Iterable

from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError

from uptend.errors import ConflictError
from uptend.protocol.versions import parse_version
from uptend.server.storage.db import AsyncConnection, Tx
from uptend.server.storage.tables import ChannelHeadRow, ReleaseRow


async def add(tx: Tx, row: ReleaseRow) -> None:
    tx.add(row)
    try:
        await tx.flush()
    except IntegrityError:
        raise ConflictError(
            f"release {row.app} {row.version} already exists",
            hint="publish a new version number; releases are immutable",
        ) from None


async def published(conn: AsyncConnection, apps: Iterable[str]) -> set[str]:
    """Which of `apps` have a release on some channel (in one query)."""
    stmt = select(ChannelHeadRow.app).where(ChannelHeadRow.app.in_(list(apps))).distinct()
    return set((await conn.scalars(stmt)).all())


async def listing(tx: Tx, app: str | None) -> list[ReleaseRow]:
    stmt = select(ReleaseRow).order_by(ReleaseRow.app, ReleaseRow.id)
    if app is not None:
        stmt = stmt.where(ReleaseRow.app == app)
    return list(await tx.scalars(stmt))


async def heads(tx: Tx, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], ChannelHeadRow]:
    """The newest release of each (app, channel) pair that has one, in one query."""
    wanted = list(set(pairs))
    if not wanted:
        return {}
    stmt = select(ChannelHeadRow).where(
        tuple_(ChannelHeadRow.app, ChannelHeadRow.channel).in_(wanted)
    )
    return {(h.app, h.channel): h for h in await tx.scalars(stmt)}


async def advance_head(tx: Tx, row: ReleaseRow) -> None:
    """Make `row` its channel's head if it is newer than the head (PEP 440 order)."""
    head = await tx.get(ChannelHeadRow, (row.app, row.channel))
    if head is None:
        tx.add(
            ChannelHeadRow(app=row.app, channel=row.channel, version=row.version, target=row.target)
        )
    elif parse_version(row.version) > parse_version(head.version):
        head.version, head.target = row.version, row.target
