"""Rows of `app_configs`: every version of each app's config document, newest highest."""

from collections.abc import Iterable, Sequence
from typing import cast

from sqlalchemy import Table, func, or_, select

from uptend.server.storage.db import AsyncConnection, Tx
from uptend.server.storage.tables import ConfigRow

CONFIGS = cast(Table, ConfigRow.__table__)


async def next_version(tx: Tx, app: str) -> int:
    newest = await tx.scalar(select(func.max(ConfigRow.version)).where(ConfigRow.app == app))
    return int(newest or 0) + 1


async def get(tx: Tx, app: str, version: int | None) -> ConfigRow | None:
    """Version `version` of `app`'s config (None: its newest, whatever the group)."""
    query = select(ConfigRow).where(ConfigRow.app == app)
    if version is not None:
        query = query.where(ConfigRow.version == version)
    return await tx.scalar(query.order_by(ConfigRow.version.desc()).limit(1))


async def history(tx: Tx, app: str, group: str | None, limit: int) -> Sequence[ConfigRow]:
    """Newest first; with `group`, the versions that apply to it (its own and every group's)."""
    query = select(ConfigRow).where(ConfigRow.app == app)
    if group is not None:
        query = query.where(or_(ConfigRow.group == group, ConfigRow.group.is_(None)))
    return (await tx.scalars(query.order_by(ConfigRow.version.desc()).limit(limit))).all()


async def effective(
    conn: AsyncConnection, group: str, apps: Iterable[str]
) -> dict[str, tuple[int, str]]:
    """Per app, (version, target) of the config a host of `group` runs.

    The newest version set for the group or for every group; read once per group plan.
    """
    wanted = list(apps)
    if not wanted:
        return {}
    query = (
        select(CONFIGS.c.app, func.max(CONFIGS.c.version))
        .where(
            CONFIGS.c.app.in_(wanted),
            or_(CONFIGS.c.group == group, CONFIGS.c.group.is_(None)),
        )
        .group_by(CONFIGS.c.app)
    )
    newest = {app: int(v) for app, v in (await conn.execute(query)).all()}
    if not newest:
        return {}
    targets = select(CONFIGS.c.app, CONFIGS.c.version, CONFIGS.c.target).where(
        CONFIGS.c.app.in_(list(newest)), CONFIGS.c.version.in_(set(newest.values()))
    )
    return {
        app: (int(v), target)
        for app, v, target in (await conn.execute(targets)).all()
        if newest.get(app) == v
    }
