"""Queries on staged rollouts: channel plans, rollouts (compare-and-set), each host's progress.

Core statements, so the check-in path (a Core connection) and the admin services and the
evaluator (a session) use them alike. Every change of a rollout's state goes through `cas`:
one UPDATE that matches only the `state_version` the writer read, so of two server processes
evaluating the same rollout at once exactly one moves it.
"""

import json
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Insert, Table, and_, bindparam, func, insert, null, select, update
from sqlalchemy.dialects import postgresql, sqlite

from uptend.server.storage.db import AsyncConnection, Tx
from uptend.server.storage.tables import (
    AgentAppRow,
    AgentLabelRow,
    AgentRow,
    ChannelPlanRow,
    GroupAppRow,
    ReleaseRow,
    RolloutHostRow,
    RolloutRow,
    RolloutSlotRow,
)

PLANS = cast(Table, ChannelPlanRow.__table__)
ROLLOUTS = cast(Table, RolloutRow.__table__)
HOSTS = cast(Table, RolloutHostRow.__table__)
AGENTS = cast(Table, AgentRow.__table__)
AGENT_APPS = cast(Table, AgentAppRow.__table__)
GROUP_APPS = cast(Table, GroupAppRow.__table__)
SLOTS = cast(Table, RolloutSlotRow.__table__)
LABELS = cast(Table, AgentLabelRow.__table__)
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
    cutoffs: Sequence[str] = (),
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
            cutoffs=json.dumps(list(cutoffs)),
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
                "slot_labels": "",
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
    ROLLOUTS.c.cutoffs,
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
    cutoffs: str  # JSON list; "" for a rollout started before 0013 (waves read per host)

    def cuts(self) -> tuple[str, ...] | None:
        """Each wave's last rank (`policy.wave_of`), or None when not recorded."""
        return tuple(json.loads(self.cutoffs)) if self.cutoffs else None


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


async def join(conn: AsyncConnection, agent_id: str, waves: Sequence[tuple[str, int]]) -> None:
    """A host enrolled after these rollouts started: its row in each (`waves`: id, wave).

    The wave is the one its rank gives it; a row there already stays (a replica told first).
    """
    if not waves:
        return
    await conn.execute(
        _insert(conn, HOSTS),
        [
            {
                "rollout_id": rollout_id,
                "agent_id": agent_id,
                "wave": wave,
                "previous": None,
                "restarts_then": 0,
                "slot": False,
                "outcome": "",
                "slot_labels": "",
            }
            for rollout_id, wave in waves
        ],
    )


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
    slot_labels: str
    installed: str | None
    state: str | None
    target: str | None
    restarts: int
    last_seen: datetime | None


_HOST_FIELDS = [f.name for f in fields(HostRow)]


async def hosts(conn: Conn, rollout_id: str, app: str) -> list[HostRow]:
    """Each host of the rollout with what its agent last reported for the app, by agent id.

    In agent id order: writers that lock several host rows lock them in the same order.
    """
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
            HOSTS.c.slot_labels,
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
        .order_by(HOSTS.c.agent_id)
    )
    out = []
    for r in await conn.execute(stmt):
        values = list(r)
        values[13] = values[13] or 0  # no agent_apps row yet: no restarts
        out.append(HostRow(**dict(zip(_HOST_FIELDS, values, strict=True))))
    return out


@dataclass(frozen=True, slots=True)
class GateRow:
    """What one check-in needs to gate a host: its row (if any) and the counts its caps read."""

    wave: int | None  # None: not in the rollout's rows (enrolled after it started, not told)
    previous: str | None
    told_at: datetime | None
    installing: int  # hosts holding a slot, overall
    labels: dict[str, str]  # the host's labels among the capped keys
    by_label: dict[tuple[str, str], int]  # hosts installing per (key, value) of those labels


async def gate_row(conn: Conn, rollout_id: str, agent_id: str, keys: Sequence[str]) -> GateRow:
    """One statement: the host's row, the overall count, its capped labels and their counts."""
    joined = ROLLOUTS.outerjoin(
        HOSTS, and_(HOSTS.c.rollout_id == ROLLOUTS.c.id, HOSTS.c.agent_id == agent_id)
    )
    label_cols: list[Any] = [null(), null(), null()]
    if keys:
        joined = joined.outerjoin(
            LABELS, and_(LABELS.c.agent_id == agent_id, LABELS.c.key.in_(list(keys)))
        ).outerjoin(
            SLOTS,
            and_(
                SLOTS.c.rollout_id == ROLLOUTS.c.id,
                SLOTS.c.key == LABELS.c.key,
                SLOTS.c.value == LABELS.c.value,
            ),
        )
        label_cols = [LABELS.c.key, LABELS.c.value, SLOTS.c.installing]
    stmt = (
        select(HOSTS.c.wave, HOSTS.c.previous, HOSTS.c.told_at, ROLLOUTS.c.installing, *label_cols)
        .select_from(joined)
        .where(ROLLOUTS.c.id == rollout_id)
    )
    rows = (await conn.execute(stmt)).all()
    first = rows[0] if rows else (None, None, None, 0)
    labels = {r[4]: r[5] for r in rows if r[4] is not None}
    by_label = {(r[4], r[5]): int(r[6] or 0) for r in rows if r[4] is not None}
    return GateRow(first[0], first[1], first[2], int(first[3] or 0), labels, by_label)


class SlotFullError(Exception):
    """A cap had no slot left when the host came to take it (the transaction is rolled back)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def _insert(conn: AsyncConnection, table: Table) -> Insert:
    """An INSERT that does nothing on a primary-key conflict, in the connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


async def tell(
    conn: AsyncConnection,
    *,
    rollout_id: str,
    agent_id: str,
    wave: int,
    previous: str | None,
    known: bool,
    cap: int | None,
    label_slots: Sequence[tuple[str, str, int]] = (),
    now: datetime,
) -> bool:
    """Let one host take the release, taking its slots; `SlotFullError` if a cap has none left.

    `previous`: the version the host runs now, which a revert goes back to. Whether it was
    recorded now (False: another check-in of the same host told it first).

    Each slot is one conditional UPDATE (`installing < cap`), atomic on both dialects, so two
    processes can never hand out the last slot twice; raising rolls the whole telling back.
    Rows are locked host, rollout, then label slots in key order, as `free_slots` does.
    """
    slotted = cap is not None or bool(label_slots)
    held = [[k, v] for k, v, _ in sorted(label_slots)]
    values: dict[str, Any] = {
        "told_at": now, "slot": slotted, "slot_labels": json.dumps(held) if held else ""
    }  # fmt: skip
    if known:  # what it runs when told is what it goes back to (the start may predate a report)
        values["previous"] = func.coalesce(previous, HOSTS.c.previous)
        result = await conn.execute(
            update(HOSTS)
            .where(
                HOSTS.c.rollout_id == rollout_id,
                HOSTS.c.agent_id == agent_id,
                HOSTS.c.told_at.is_(None),
            )
            .values(**values)
        )
    else:  # enrolled after the rollout started: it joins the wave its rank puts it in
        result = await conn.execute(
            _insert(conn, HOSTS).values(
                rollout_id=rollout_id,
                agent_id=agent_id,
                wave=wave,
                previous=previous,
                restarts_then=0,
                outcome="",
                **values,
            )
        )
    if not getattr(result, "rowcount", 0):
        return False
    if slotted:
        limit = [] if cap is None else [ROLLOUTS.c.installing < cap]
        taken = await conn.execute(
            update(ROLLOUTS)
            .where(ROLLOUTS.c.id == rollout_id, *limit)
            .values(installing=ROLLOUTS.c.installing + 1)
        )
        if not getattr(taken, "rowcount", 0):
            raise SlotFullError(f"{cap} hosts installing (cap {cap})")
    for key, value, n in sorted(label_slots):
        await conn.execute(
            _insert(conn, SLOTS).values(
                rollout_id=rollout_id, key=key, value=value, installing=0, cap=n
            )
        )
        taken = await conn.execute(
            update(SLOTS)
            .where(
                SLOTS.c.rollout_id == rollout_id,
                SLOTS.c.key == key,
                SLOTS.c.value == value,
                SLOTS.c.installing < n,
            )
            .values(installing=SLOTS.c.installing + 1)
        )
        if not getattr(taken, "rowcount", 0):
            raise SlotFullError(f"{n} hosts installing in {key}={value}")
    return True


async def mark(
    tx: Tx,
    rollout_id: str,
    *,
    healthy: Sequence[tuple[str, datetime, int]] = (),
    outcomes: Sequence[tuple[str, str]] = (),
) -> None:
    """Record hosts' progress, each kind in one statement (the write lock is held briefly).

    `healthy`: (agent id, first healthy at, its restart count then); `outcomes`: (agent id,
    succeeded | failed).
    """
    where = and_(HOSTS.c.rollout_id == rollout_id, HOSTS.c.agent_id == bindparam("b_agent"))
    if healthy:
        await tx.execute(
            update(HOSTS)
            .where(where)
            .values(healthy_at=bindparam("b_at"), restarts_then=bindparam("b_restarts")),
            [{"b_agent": a, "b_at": at, "b_restarts": n} for a, at, n in healthy],
        )
    if outcomes:
        await tx.execute(
            update(HOSTS).where(where).values(outcome=bindparam("b_outcome")),
            [{"b_agent": a, "b_outcome": o} for a, o in outcomes],
        )


async def free_slots(tx: Tx, rollout_id: str, agent_ids: Sequence[str]) -> int:
    """Free the slots these hosts hold, once each (a second evaluator frees none); how many.

    One UPDATE clears the hosts' flags and returns what each held, then the counts drop in
    one UPDATE each: host rows, rollout, label slots in key order, the order `tell` locks
    them in. `slot_labels` stays as it was: RETURNING reads a row as updated, so clearing it
    here would return "" and leave the label counts taken for good (it means nothing once
    `slot` is false, and a host is told once).
    """
    if not agent_ids:
        return 0
    done = await tx.execute(
        update(HOSTS)
        .where(
            HOSTS.c.rollout_id == rollout_id,
            HOSTS.c.agent_id.in_(list(agent_ids)),
            HOSTS.c.slot.is_(True),
        )
        .values(slot=False)
        .returning(HOSTS.c.slot_labels)
    )
    held = [r[0] for r in done]
    labels: Counter[tuple[str, str]] = Counter()
    for slot_labels in held:
        labels.update((k, v) for k, v in (json.loads(slot_labels) if slot_labels else []))
    if held:
        await tx.execute(
            update(ROLLOUTS)
            .where(ROLLOUTS.c.id == rollout_id)
            .values(installing=ROLLOUTS.c.installing - len(held))
        )
    for (key, value), n in sorted(labels.items()):
        await tx.execute(
            update(SLOTS)
            .where(SLOTS.c.rollout_id == rollout_id, SLOTS.c.key == key, SLOTS.c.value == value)
            .values(installing=SLOTS.c.installing - n)
        )
    return len(held)


async def label_slots(conn: Conn, rollout_id: str) -> list[tuple[str, str, int, int]]:
    """(key, value, hosts installing, cap) of each label value of the rollout that took a slot."""
    stmt = (
        select(SLOTS.c.key, SLOTS.c.value, SLOTS.c.installing, SLOTS.c.cap)
        .where(SLOTS.c.rollout_id == rollout_id)
        .order_by(SLOTS.c.key, SLOTS.c.value)
    )
    return [(k, v, int(n), int(cap)) for k, v, n, cap in await conn.execute(stmt)]


async def target_of(conn: Conn, app: str, version: str) -> str | None:
    """The signed target path of a release (a revert's directive names it)."""
    stmt = select(ReleaseRow.target).where(ReleaseRow.app == app, ReleaseRow.version == version)
    return (await conn.execute(stmt)).scalar()
