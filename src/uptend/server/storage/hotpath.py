"""The per-request statements (authenticate, check in), in SQLAlchemy Core.

No ORM here: no identity map, no unit of work, no per-row object; statements are built once
at import so SQLAlchemy's compiled cache hits on every call.
"""

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Dialect, Table, and_, bindparam, insert, or_, select, update

from uptend.server.storage.db import FLUSH, AsyncConnection
from uptend.server.storage.tables import (
    AgentAppRow,
    AgentRow,
    ChannelHeadRow,
    GroupAppRow,
    GroupRow,
    ReportRow,
    UTCDateTime,
)

AGENTS = cast(Table, AgentRow.__table__)
AGENT_APPS = cast(Table, AgentAppRow.__table__)
REPORTS = cast(Table, ReportRow.__table__)
GROUPS = cast(Table, GroupRow.__table__)
GROUP_APPS = cast(Table, GroupAppRow.__table__)
HEADS = cast(Table, ChannelHeadRow.__table__)
PACKAGE_FIELDS = ("kind", "package", "package_expected", "package_version")
PACKAGE_COLUMNS = [AGENT_APPS.c[name] for name in PACKAGE_FIELDS]


@dataclass(frozen=True, slots=True)
class AppRecord:
    """What the server holds about one app on one agent (an `agent_apps` row's content)."""

    installed: str | None
    state: str
    target: str | None
    reason: str
    log_tail: str
    restarts: int = 0  # the app's crashes since its version started, as the agent counts
    kind: str | None = None  # the install kind of the installed version
    package: str | None = None  # a package kind's package, its expected and reported versions
    package_expected: str | None = None
    package_version: str | None = None

    @property
    def said(self) -> tuple[object, ...]:
        """What the agent says of the app, as a check-in compares it (not the log tail)."""
        return (
            self.installed, self.state, self.target, self.reason, self.restarts, self.kind,
            self.package, self.package_expected, self.package_version,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Recorded:
    """An agent's rows as stored: what a check-in compares with before writing anything."""

    agent_version: str | None
    seen: bool  # last_seen is set
    apps: dict[str, AppRecord]
    retry: frozenset[str]


_RECORDED = (
    select(
        AGENTS.c.agent_version,
        AGENTS.c.last_seen,
        AGENT_APPS.c.app,
        AGENT_APPS.c.installed,
        AGENT_APPS.c.state,
        AGENT_APPS.c.target,
        AGENT_APPS.c.reason,
        AGENT_APPS.c.log_tail,
        AGENT_APPS.c.retry,
        AGENT_APPS.c.restarts,
        *PACKAGE_COLUMNS,
    )
    .select_from(AGENTS.outerjoin(AGENT_APPS, AGENT_APPS.c.agent_id == AGENTS.c.id))
    .where(AGENTS.c.id == bindparam("agent_id"))
)
_INSERT_APP = insert(AGENT_APPS)
_UPDATE_APP = (
    update(AGENT_APPS)
    .where(AGENT_APPS.c.agent_id == bindparam("b_agent_id"), AGENT_APPS.c.app == bindparam("b_app"))
    .values(
        installed=bindparam("installed"),
        state=bindparam("state"),
        target=bindparam("target"),
        reason=bindparam("reason"),
        log_tail=bindparam("log_tail"),
        restarts=bindparam("restarts"),
        **{name: bindparam(name) for name in PACKAGE_FIELDS},
        updated_at=bindparam("updated_at"),
    )
)
_CLEAR_RETRY = (
    update(AGENT_APPS)
    .where(
        AGENT_APPS.c.agent_id == bindparam("b_agent_id"),
        AGENT_APPS.c.app == bindparam("b_app"),
        AGENT_APPS.c.retry.is_(True),
    )
    .values(retry=False)
)
_SET_AGENT = (
    update(AGENTS)
    .where(AGENTS.c.id == bindparam("b_id"))
    .values(agent_version=bindparam("agent_version"))
)
# Never move last_seen backwards: replicas flush in any order.
_SEEN = (
    update(AGENTS)
    .where(
        AGENTS.c.id == bindparam("b_id"),
        or_(AGENTS.c.last_seen.is_(None), AGENTS.c.last_seen < bindparam("last_seen")),
    )
    .values(last_seen=bindparam("last_seen"))
)
_INSERT_REPORT = insert(REPORTS)
_GROUP = select(GROUPS.c.poll_interval_s, GROUPS.c.auto_update).where(
    GROUPS.c.name == bindparam("group")
)
_GROUP_PLAN = (
    select(GROUP_APPS.c.app, GROUP_APPS.c.channel, HEADS.c.version, HEADS.c.target)
    .select_from(
        GROUP_APPS.outerjoin(
            HEADS, and_(HEADS.c.app == GROUP_APPS.c.app, HEADS.c.channel == GROUP_APPS.c.channel)
        )
    )
    .where(GROUP_APPS.c.group == bindparam("group"))
    .order_by(GROUP_APPS.c.app)
)


async def recorded(conn: AsyncConnection, agent_id: str) -> Recorded:
    """The agent's version, whether it was ever seen, and its per-app rows: one read."""
    apps: dict[str, AppRecord] = {}
    retry: set[str] = set()
    agent_version: str | None = None
    seen = False
    for row in await conn.execute(_RECORDED, {"agent_id": agent_id}):
        agent_version, seen = row.agent_version, row.last_seen is not None
        if row.app is not None:
            apps[row.app] = AppRecord(
                row.installed,
                row.state,
                row.target,
                row.reason,
                row.log_tail,
                row.restarts or 0,
                *(getattr(row, name) for name in PACKAGE_FIELDS),
            )
            if row.retry:
                retry.add(row.app)
    return Recorded(agent_version, seen, apps, frozenset(retry))


async def write_apps(
    conn: AsyncConnection,
    agent_id: str,
    now: datetime,
    new: dict[str, AppRecord],
    changed: dict[str, AppRecord],
) -> None:
    if new:
        await conn.execute(
            _INSERT_APP,
            [
                {"agent_id": agent_id, "app": app, "retry": False, "updated_at": now, **_values(r)}
                for app, r in new.items()
            ],
        )
    if changed:
        await conn.execute(
            _UPDATE_APP,
            [
                {"b_agent_id": agent_id, "b_app": app, "updated_at": now, **_values(r)}
                for app, r in changed.items()
            ],
        )


def _values(r: AppRecord) -> dict[str, Any]:
    return {
        "installed": r.installed,
        "state": r.state,
        "target": r.target,
        "reason": r.reason,
        "log_tail": r.log_tail,
        "restarts": r.restarts,
        **{name: getattr(r, name) for name in PACKAGE_FIELDS},
    }


async def clear_retry(conn: AsyncConnection, agent_id: str, apps: Iterable[str]) -> None:
    await conn.execute(_CLEAR_RETRY, [{"b_agent_id": agent_id, "b_app": app} for app in apps])


async def set_agent_version(conn: AsyncConnection, agent_id: str, version: str) -> None:
    await conn.execute(_SET_AGENT, {"b_id": agent_id, "agent_version": version})


async def add_reports(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    await conn.execute(_INSERT_REPORT, rows)


async def set_last_seen(conn: AsyncConnection, agent_id: str, at: datetime) -> None:
    """An agent's first check-in: "never seen" is a state, so it is written at once."""
    await conn.execute(_SEEN, {"b_id": agent_id, "last_seen": at})


def flush_last_seen(conn: Connection, seen: dict[str, datetime]) -> None:
    """The coalesced flush: `_SEEN` for all of `seen`, one executemany, off the event loop.

    Sent as the dialect's compiled SQL, each time bound by the column's own type: the per-row
    work SQLAlchemy's executemany adds (~12 µs a row, half the flush) holds the GIL, and so
    the event loop, even from another thread. Rows in id order: neighbours in the table.
    """
    sql, order, bind = _flush_sql(conn.dialect)
    rows = [{"b_id": agent_id, "last_seen": bind(at)} for agent_id, at in sorted(seen.items())]
    params = rows if order is None else [tuple(row[name] for name in order) for row in rows]
    conn.exec_driver_sql(sql, params, execution_options=FLUSH)


@functools.cache
def _flush_sql(dialect: Dialect) -> tuple[str, tuple[str, ...] | None, Callable[[Any], Any]]:
    compiled = _SEEN.compile(dialect=dialect)
    order = tuple(compiled.positiontup) if compiled.positiontup else None
    bind = UTCDateTime().bind_processor(dialect)
    return str(compiled), order, bind or (lambda value: value)


async def group_plan(
    conn: AsyncConnection, group: str
) -> tuple[tuple[float, bool] | None, list[Sequence[Any]]]:
    """The group's (poll interval, auto-update) and its (app, channel, head version, target)."""
    settings = (await conn.execute(_GROUP, {"group": group})).first()
    if settings is None:
        return None, []
    rows: list[Sequence[Any]] = list(await conn.execute(_GROUP_PLAN, {"group": group}))
    return (float(settings[0]), bool(settings[1])), rows
