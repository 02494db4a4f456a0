"""Queries on staged rollouts: channel plans, rollouts (compare-and-set), each host's progress.

Core statements, so the check-in path (a Core connection) and the admin services and the
evaluator (a session) use them alike. Every change of a rollout's state goes through `cas`:
one UPDATE that matches only the `state_version` the writer read, so of two server processes
evaluating the same rollout at once exactly one moves it.
"""

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, func, insert, select, update

from uptend.server.storage.db import AsyncConnection, Tx
from uptend.server.storage.tables import (
    AgentAppRow,
    AgentRow,
    ChannelPlanRow,
    GroupAppRow,
    ReleaseRow,
    RolloutHostRow,
    RolloutRow,
)

PLANS = cast(Table, ChannelPlanRow.__table__)
ROLLOUTS = cast(Table, RolloutRow.__table__)
HOSTS = cast(Table, RolloutHostRow.__table__)
AGENTS = cast(Table, AgentRow.__table__)
AGENT_APPS = cast(Table, AgentAppRow.__table__)
GROUP_APPS = cast(Table, GroupAppRow.__table__)
Conn = AsyncConnection | Tx
LIVE = ("running", "paused", "halted")  # states a newer release supersedes


def new_id() -> str:
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class StoredPlan:
    plan: str  # JSON
    next_rollout: str


async def plan(conn: Conn, app: str, channel: str) -> StoredPlan | None:
    stmt = select(PLANS.c.plan, PLANS.c.next_rollout).where(
        PLANS.c.app == app, PLANS.c.channel == channel
    )
    row = (await conn.execute(stmt)).first()
    return None if row is None else StoredPlan(row[0], row[1])


async def set_plan(tx: Tx, app: str, channel: str, plan_json: str, now: datetime) -> None:
    row = await tx.get(ChannelPlanRow, (app, channel))
    if row is None:
        row = ChannelPlanRow(app=app, channel=channel, next_rollout=new_id())
        tx.add(row)
    row.plan, row.updated_at = plan_json, now
    await tx.flush()


async def channel_hosts(conn: Conn, app: str, channel: str) -> list[tuple[str, str, str | None]]:
    """(agent id, name, installed version) of each live agent whose group follows the channel."""
    stmt = (
        select(AGENTS.c.id, AGENTS.c.name, AGENT_APPS.c.installed)
        .select_from(
            AGENTS.join(
                GROUP_APPS,
                and_(
                    GROUP_APPS.c.group == AGENTS.c.group,
                    GROUP_APPS.c.app == app,
                    GROUP_APPS.c.channel == channel,
                ),
            ).outerjoin(
                AGENT_APPS, and_(AGENT_APPS.c.agent_id == AGENTS.c.id, AGENT_APPS.c.app == app)
            )
        )
        .where(AGENTS.c.revoked_at.is_(None))
    )
    return [(r[0], r[1], r[2]) for r in await conn.execute(stmt)]


async def start(
    tx: Tx,
    *,
    rollout_id: str,
    app: str,
    channel: str,
    version: str,
    plan_json: str,
    waves: dict[str, int],
    installed: dict[str, str | None],
    now: datetime,
    max_concurrent: int | None = None,
) -> None:
    """Record a new rollout with each host's wave; the channel's next rollout gets a new id."""
    await tx.execute(
        insert(ROLLOUTS).values(
            id=rollout_id,
            app=app,
            channel=channel,
            version=version,
            plan=plan_json,
            state="running",
            state_version=0,
            wave=0,
            wave_opened_at=now,
            started_at=now,
            reason="wave 1 open",
            installing=0,
            max_concurrent=max_concurrent,
        )
    )
    if waves:
        rows = [
            {
                "rollout_id": rollout_id,
                "agent_id": a,
                "wave": w,
                "previous": installed.get(a),
                "restarts_then": 0,
                "slot": False,
                "outcome": "",
            }
            for a, w in waves.items()
        ]
        await tx.execute(insert(HOSTS), rows)
    await tx.execute(
        update(PLANS)
        .where(PLANS.c.app == app, PLANS.c.channel == channel)
        .values(next_rollout=new_id())
    )


_COLUMNS = (
    ROLLOUTS.c.id,
    ROLLOUTS.c.app,
    ROLLOUTS.c.channel,
    ROLLOUTS.c.version,
    ROLLOUTS.c.plan,
    ROLLOUTS.c.state,
    ROLLOUTS.c.state_version,
    ROLLOUTS.c.wave,
    ROLLOUTS.c.wave_opened_at,
    ROLLOUTS.c.started_at,
    ROLLOUTS.c.ended_at,
    ROLLOUTS.c.reason,
    ROLLOUTS.c.installing,
)


@dataclass(frozen=True, slots=True)
class StoredRollout:
    id: str
    app: str
    channel: str
    version: str
    plan: str
    state: str
    state_version: int
    wave: int
    wave_opened_at: datetime
    started_at: datetime
    ended_at: datetime | None
    reason: str
    installing: int


def _stored(row: Any) -> StoredRollout:
    return StoredRollout(*tuple(row))


async def latest(conn: Conn, app: str, channel: str | None = None) -> StoredRollout | None:
    """The newest rollout of the app (on `channel`, if given)."""
    stmt = select(*_COLUMNS).where(ROLLOUTS.c.app == app)
    if channel is not None:
        stmt = stmt.where(ROLLOUTS.c.channel == channel)
    row = (await conn.execute(stmt.order_by(ROLLOUTS.c.started_at.desc()).limit(1))).first()
    return None if row is None else _stored(row)


async def of_heads(conn: Conn, pairs: Sequence[tuple[str, str, str]]) -> dict[str, StoredRollout]:
    """App -> the rollout of its channel head, for (app, channel, head version) triples."""
    out: dict[str, StoredRollout] = {}
    for app, channel, version in pairs:
        stmt = select(*_COLUMNS).where(
            ROLLOUTS.c.app == app, ROLLOUTS.c.channel == channel, ROLLOUTS.c.version == version
        )
        row = (await conn.execute(stmt.order_by(ROLLOUTS.c.started_at.desc()).limit(1))).first()
        if row is not None:
            out[app] = _stored(row)
    return out


async def live(
    conn: Conn, app: str | None = None, channel: str | None = None, states: Sequence[str] = LIVE
) -> list[str]:
    """Ids of rollouts in `states` (by default: not yet over), of the app on `channel`."""
    stmt = select(ROLLOUTS.c.id).where(ROLLOUTS.c.state.in_(states))
    if app is not None:
        stmt = stmt.where(ROLLOUTS.c.app == app, ROLLOUTS.c.channel == channel)
    return list((await conn.execute(stmt)).scalars())


async def by_id(conn: Conn, rollout_id: str) -> StoredRollout | None:
    row = (await conn.execute(select(*_COLUMNS).where(ROLLOUTS.c.id == rollout_id))).first()
    return None if row is None else _stored(row)


async def cas(tx: Tx | AsyncConnection, r: StoredRollout, **values: Any) -> bool:
    """Write `values` if the rollout is still at the state version `r` was read at."""
    result = await tx.execute(
        update(ROLLOUTS)
        .where(ROLLOUTS.c.id == r.id, ROLLOUTS.c.state_version == r.state_version)
        .values(state_version=r.state_version + 1, **values)
    )
    return bool(getattr(result, "rowcount", 0))


# -- hosts ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostRow:
    agent_id: str
    name: str
    wave: int
    previous: str | None
    told_at: datetime | None
    healthy_at: datetime | None
    restarts_then: int
    slot: bool
    outcome: str
    installed: str | None
    state: str | None
    target: str | None
    restarts: int
    last_seen: datetime | None


_HOST_FIELDS = [f.name for f in fields(HostRow)]


async def hosts(conn: Conn, rollout_id: str, app: str) -> list[HostRow]:
    """Each host of the rollout with what its agent last reported for the app."""
    stmt = (
        select(
            HOSTS.c.agent_id,
            AGENTS.c.name,
            HOSTS.c.wave,
            HOSTS.c.previous,
            HOSTS.c.told_at,
            HOSTS.c.healthy_at,
            HOSTS.c.restarts_then,
            HOSTS.c.slot,
            HOSTS.c.outcome,
            AGENT_APPS.c.installed,
            AGENT_APPS.c.state,
            AGENT_APPS.c.target,
            AGENT_APPS.c.restarts,
            AGENTS.c.last_seen,
        )
        .select_from(
            HOSTS.join(AGENTS, AGENTS.c.id == HOSTS.c.agent_id).outerjoin(
                AGENT_APPS, and_(AGENT_APPS.c.agent_id == HOSTS.c.agent_id, AGENT_APPS.c.app == app)
            )
        )
        .where(HOSTS.c.rollout_id == rollout_id)
    )
    out = []
    for r in await conn.execute(stmt):
        values = list(r)
        values[12] = values[12] or 0  # no agent_apps row yet: no restarts
        out.append(HostRow(**dict(zip(_HOST_FIELDS, values, strict=True))))
    return out


_HOST = select(HOSTS.c.wave, HOSTS.c.previous, HOSTS.c.told_at).where(
    HOSTS.c.rollout_id == bindparam("rollout_id"), HOSTS.c.agent_id == bindparam("agent_id")
)
_INSTALLING = select(ROLLOUTS.c.installing).where(ROLLOUTS.c.id == bindparam("rollout_id"))


async def host(
    conn: Conn, rollout_id: str, agent_id: str
) -> tuple[int, str | None, datetime | None] | None:
    """(wave, previous version, told at) of one host, if it is in the rollout."""
    row = (await conn.execute(_HOST, {"rollout_id": rollout_id, "agent_id": agent_id})).first()
    return None if row is None else (row[0], row[1], row[2])


async def installing(conn: Conn, rollout_id: str) -> int:
    return int((await conn.execute(_INSTALLING, {"rollout_id": rollout_id})).scalar() or 0)


async def tell(
    conn: AsyncConnection,
    *,
    rollout_id: str,
    agent_id: str,
    wave: int,
    previous: str | None,
    known: bool,
    cap: int | None,
    now: datetime,
) -> bool:
    """Let one host take the release: take a slot first when capped; False if none is left.

    `previous`: the version the host runs now, which a revert goes back to.

    The slot is one conditional UPDATE (installing < cap): atomic on both dialects, so two
    processes can never hand out the last slot twice.
    """
    if cap is not None:
        taken = await conn.execute(
            update(ROLLOUTS)
            .where(ROLLOUTS.c.id == rollout_id, ROLLOUTS.c.installing < cap)
            .values(installing=ROLLOUTS.c.installing + 1)
        )
        if not getattr(taken, "rowcount", 0):
            return False
    values: dict[str, Any] = {"told_at": now, "slot": cap is not None}
    if known:  # what it runs when told is what it goes back to (the start may predate a report)
        values["previous"] = func.coalesce(previous, HOSTS.c.previous)
        await conn.execute(
            update(HOSTS)
            .where(
                HOSTS.c.rollout_id == rollout_id,
                HOSTS.c.agent_id == agent_id,
                HOSTS.c.told_at.is_(None),
            )
            .values(**values)
        )
    else:  # enrolled after the rollout started: it joins the last wave
        await conn.execute(
            insert(HOSTS).values(
                rollout_id=rollout_id,
                agent_id=agent_id,
                wave=wave,
                previous=previous,
                restarts_then=0,
                outcome="",
                **values,
            )
        )
    return True


async def mark(
    tx: Tx,
    rollout_id: str,
    agent_id: str,
    *,
    healthy_at: datetime | None = None,
    restarts_then: int | None = None,
    outcome: str | None = None,
    free_slot: bool = False,
) -> None:
    """Record a host's progress; free its slot (once: guarded by the slot flag)."""
    where = and_(HOSTS.c.rollout_id == rollout_id, HOSTS.c.agent_id == agent_id)
    values: dict[str, Any] = {}
    if healthy_at is not None:
        values.update(healthy_at=healthy_at, restarts_then=restarts_then or 0)
    if outcome is not None:
        values["outcome"] = outcome
    if values:
        await tx.execute(update(HOSTS).where(where).values(**values))
    if free_slot:
        freed = await tx.execute(
            update(HOSTS).where(where, HOSTS.c.slot.is_(True)).values(slot=False)
        )
        if getattr(freed, "rowcount", 0):
            await tx.execute(
                update(ROLLOUTS)
                .where(ROLLOUTS.c.id == rollout_id)
                .values(installing=ROLLOUTS.c.installing - 1)
            )


async def target_of(conn: Conn, app: str, version: str) -> str | None:
    """The signed target path of a release (a revert's directive names it)."""
    stmt = select(ReleaseRow.target).where(ReleaseRow.app == app, ReleaseRow.version == version)
    return (await conn.execute(stmt)).scalar()
