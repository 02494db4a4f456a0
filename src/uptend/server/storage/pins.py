"""Queries on pins and floors: a group's pin per app, the releases published with --floor.

Read when a group's plan is built (once per generation) and by the fleet view, never per
check-in. Core statements, so a Core connection and a session read them alike.
"""

from collections.abc import Sequence
from typing import cast

from sqlalchemy import Table, and_, delete, insert, select

from uptend.server.storage.db import AsyncConnection, Tx
from uptend.server.storage.tables import ChannelHeadRow, GroupAppRow, GroupPinRow, ReleaseRow

PINS = cast(Table, GroupPinRow.__table__)
RELEASES = cast(Table, ReleaseRow.__table__)
GROUP_APPS = cast(Table, GroupAppRow.__table__)
HEADS = cast(Table, ChannelHeadRow.__table__)
Conn = AsyncConnection | Tx


async def pins_of(conn: Conn, group: str | None = None) -> dict[tuple[str, str], str]:
    """(group, app) -> pin spec, of one group or of all."""
    stmt = select(PINS.c.group, PINS.c.app, PINS.c.spec)
    if group is not None:
        stmt = stmt.where(PINS.c.group == group)
    return {(g, a): spec for g, a, spec in await conn.execute(stmt)}


async def set_pin(tx: Tx, group: str, app: str, spec: str | None) -> None:
    """Pin `app` in `group` to `spec`; None removes the pin."""
    await tx.execute(delete(PINS).where(PINS.c.group == group, PINS.c.app == app))
    if spec is not None:
        await tx.execute(insert(PINS), [{"group": group, "app": app, "spec": spec}])


async def floors(conn: Conn, apps: Sequence[str] | None = None) -> dict[str, list[str]]:
    """App -> the versions published with --floor (only apps that have one)."""
    stmt = select(RELEASES.c.app, RELEASES.c.version).where(RELEASES.c.floor.is_(True))
    if apps is not None:
        stmt = stmt.where(RELEASES.c.app.in_(list(apps)))
    out: dict[str, list[str]] = {}
    for app, version in await conn.execute(stmt):
        out.setdefault(app, []).append(version)
    return out


async def versions_on(
    conn: Conn, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, str]]:
    """(app, channel) -> {version: target} of every release on it, for these pairs."""
    out: dict[tuple[str, str], dict[str, str]] = {p: {} for p in pairs}
    if not pairs:
        return out
    apps = sorted({a for a, _ in pairs})
    stmt = select(RELEASES.c.app, RELEASES.c.channel, RELEASES.c.version, RELEASES.c.target)
    for app, channel, version, target in await conn.execute(stmt.where(RELEASES.c.app.in_(apps))):
        if (app, channel) in out:
            out[app, channel][version] = target
    return out


async def assignments(
    conn: Conn, group: str | None = None
) -> list[tuple[str, str, str, str | None]]:
    """(group, app, channel, head version) of every assignment (of one group)."""
    stmt = select(GROUP_APPS.c.group, GROUP_APPS.c.app, GROUP_APPS.c.channel, HEADS.c.version)
    stmt = stmt.select_from(
        GROUP_APPS.outerjoin(
            HEADS, and_(HEADS.c.app == GROUP_APPS.c.app, HEADS.c.channel == GROUP_APPS.c.channel)
        )
    )
    if group is not None:
        stmt = stmt.where(GROUP_APPS.c.group == group)
    return [(g, a, c, h) for g, a, c, h in await conn.execute(stmt)]
