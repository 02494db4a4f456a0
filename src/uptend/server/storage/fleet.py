"""The fleet view's queries: one row per (agent, app), its reason code derived in SQL.

An agent's apps are those its group is assigned (joined with the channel head and what the
agent reported) plus those it reports but is no longer assigned. The reason code of each is a
CASE over those columns, so filtering, paging and counting by reason all happen in the
database. The CASE is the one place that decides the code; `policy.desired.explain` only
words it. Precedence (first match wins):

    up_to_date                               fine, unless failed or still in its probation,
                                             or a pin or floor holds its group elsewhere
    no_release / not_assigned                fine, unless the app's state is failed
    pinned / floor                           on what its group's pin (or the floor) says, below
                                             the head (resolved in Python: `Pins`)
    never_checked_in                         no last-seen yet
    offline                                  last-seen older than the group's cutoff
    failed                                   the agent says the last update failed
    auto_update_off                          the group holds what is installed (a pin wins)
    updating                                 the agent is at it
    halted                                   the head's rollout halted or was aborted
    waiting_wave                             its wave is not open (or the rollout is paused)
    concurrency_cap                          in the open wave, not let through, cap full
    frozen / outside_window                  the group's schedule holds a non-critical head
                                             back now (decided in Python: `Held`)
    deferred_precondition                    the agent waits for a precondition (a deferral
                                             the schedule no longer holds: update_pending)
    update_pending                           anything else: it installs at its next check-in
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    case,
    cast,
    false,
    func,
    literal,
    null,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.orm import aliased

from uptend.policy.schedule import DEFERRED_WORDS
from uptend.protocol import AppState, ReasonCode
from uptend.protocol.reasons import FINE_CODES
from uptend.server.storage.db import Tx
from uptend.server.storage.labels import having as has_label
from uptend.server.storage.tables import (
    AgentAppRow,
    AgentLabelRow,
    AgentRow,
    ChannelHeadRow,
    GroupAppRow,
    GroupRow,
    ReleaseRow,
    RolloutHostRow,
    RolloutRow,
    RolloutSlotRow,
    UTCDateTime,
)

HOLDING = ("running", "paused", "halted", "aborted")  # a rollout in these may hold a host back

Cutoffs = Mapping[str, datetime]  # group -> agents last seen before this are offline
Held = Mapping[str, ReasonCode]  # group -> the schedule's code (frozen, outside_window) now
# (group, app) -> (the version its pin or the floor says, PINNED/FLOOR or None when that is the
# head): only the pairs a pin or a floor changes
Pins = Mapping[tuple[str, str], tuple[str | None, ReasonCode | None]]


@dataclass(frozen=True, slots=True)
class Filters:
    group: str | None = None
    app: str | None = None  # also narrows the apps shown to this one
    code: ReasonCode | None = None
    outdated: bool = False
    labels: tuple[tuple[str, str], ...] = ()  # every one of these key=value labels


@dataclass(frozen=True, slots=True)
class Pair:
    """One app on one agent, as the view query returns it."""

    agent_id: str
    app: str
    assigned: bool
    channel: str
    head: str | None
    installed: str | None
    state: AppState
    target: str | None
    said: str
    log_tail: str
    code: ReasonCode
    critical: bool = False  # the head is a critical release
    rollout: str | None = None  # the head's rollout, if it may hold the host back
    wave: int = 0  # the host's wave in it, from 0
    open_wave: int = 0  # its open wave
    kind: str | None = None  # what the agent reported: the installed version's install kind
    package: str | None = None  # ... and a package kind's package, as its manager has it
    package_expected: str | None = None
    package_version: str | None = None


def _pair_in(agent: Any, keys: Iterable[tuple[str, str]]) -> ColumnElement[bool]:
    return or_(false(), *[and_(agent.group == g, GroupAppRow.app == a) for g, a in keys])


def _code(
    agent: Any, *, assigned: bool, cutoffs: Cutoffs, held: Held, pins: Pins
) -> ColumnElement[str]:
    """The reason code of one (agent, app) row; `assigned` picks the half of the union."""
    head, installed = ChannelHeadRow.version, AgentAppRow.installed
    elsewhere = {k: v for k, v in pins.items() if v[1] is not None}  # held below the head
    st = func.coalesce(AgentAppRow.state, AppState.PENDING.value)
    not_failed = st != AppState.FAILED.value
    settled = st.not_in([AppState.FAILED.value, AppState.UPDATING.value])  # probation: not yet
    whens: list[tuple[ColumnElement[bool], ReasonCode]] = []
    if assigned:
        on_head = and_(head.is_not(None), installed == head, settled)
        whens += [
            (and_(on_head, ~_pair_in(agent, elsewhere)), ReasonCode.UP_TO_DATE),
            (and_(head.is_(None), not_failed), ReasonCode.NO_RELEASE),
        ]
        for (g, a), (version, code) in elsewhere.items():
            there = true() if version is None else installed == version
            assert code is not None
            whens.append((and_(agent.group == g, GroupAppRow.app == a, settled, there), code))
    else:
        whens.append((not_failed, ReasonCode.NOT_ASSIGNED))
    whens.append((agent.last_seen.is_(None), ReasonCode.NEVER_CHECKED_IN))
    if cutoffs:
        cutoff = case({g: literal(c, UTCDateTime()) for g, c in cutoffs.items()}, value=agent.group)
        whens.append((agent.last_seen < cutoff, ReasonCode.OFFLINE))
    whens.append((st == AppState.FAILED.value, ReasonCode.FAILED))
    if assigned:
        stays = and_(
            GroupRow.auto_update == false(), installed.is_not(None), ~_pair_in(agent, pins)
        )
        whens.append((stays, ReasonCode.AUTO_UPDATE_OFF))
    whens.append((st == AppState.UPDATING.value, ReasonCode.UPDATING))
    if assigned:
        r, h = RolloutRow, RolloutHostRow
        untold = h.told_at.is_(None)
        whens += [
            (r.state.in_(["halted", "aborted"]), ReasonCode.HALTED),
            (and_(r.state == "paused", untold), ReasonCode.WAITING_WAVE),
            (
                and_(r.state == "running", func.coalesce(h.wave, 0) > r.wave),
                ReasonCode.WAITING_WAVE,
            ),
            (
                and_(r.state == "running", untold, r.installing >= r.max_concurrent),
                ReasonCode.CONCURRENCY_CAP,
            ),
            (and_(r.state == "running", untold, _label_full(agent)), ReasonCode.CONCURRENCY_CAP),
        ]
        not_critical = or_(
            func.coalesce(ReleaseRow.critical, false()).is_(false()), _pair_in(agent, elsewhere)
        )
        for code in (ReasonCode.FROZEN, ReasonCode.OUTSIDE_WINDOW):
            if groups := [g for g, c in held.items() if c is code]:
                whens.append((and_(not_critical, agent.group.in_(groups)), code))
    said = func.coalesce(AgentAppRow.reason, "")
    over = or_(*[said.like(f"deferred: {words}%") for words in DEFERRED_WORDS])
    whens += [
        (and_(st == AppState.DEFERRED.value, over), ReasonCode.UPDATE_PENDING),
        (st == AppState.DEFERRED.value, ReasonCode.DEFERRED_PRECONDITION),
    ]
    return case(*[(w, c.value) for w, c in whens], else_=ReasonCode.UPDATE_PENDING.value)


def _label_full(agent: Any) -> ColumnElement[bool]:
    """The agent has a label value whose slots in the head's rollout are all taken."""
    s, lab = RolloutSlotRow, AgentLabelRow
    full = (
        select(s.rollout_id)
        .join(lab, and_(lab.key == s.key, lab.value == s.value))
        .where(s.rollout_id == RolloutRow.id, lab.agent_id == agent.id, s.installing >= s.cap)
    )
    return full.exists()


def _pairs(
    cutoffs: Cutoffs,
    held: Held,
    pins: Pins,
    *,
    group: str | None,
    app: str | None,
    agent_ids: Sequence[str] | None,
) -> Any:
    """Both halves of the (agent, app) rows, narrowed before the union, as a subquery."""
    agent = aliased(AgentRow, name="fa")
    common = (
        AgentAppRow.installed,
        AgentAppRow.state,
        AgentAppRow.target,
        func.coalesce(AgentAppRow.reason, "").label("said"),
        func.coalesce(AgentAppRow.log_tail, "").label("log_tail"),
        GroupRow.auto_update.label("auto_update"),
        AgentAppRow.kind,
        AgentAppRow.package,
        AgentAppRow.package_expected,
        AgentAppRow.package_version,
    )
    assigned = (
        select(
            agent.id.label("agent_id"),
            GroupAppRow.app.label("app"),
            literal(True).label("assigned"),
            GroupAppRow.channel.label("channel"),
            ChannelHeadRow.version.label("head"),
            *common,
            _code(agent, assigned=True, cutoffs=cutoffs, held=held, pins=pins).label("code"),
            func.coalesce(ReleaseRow.critical, false()).label("critical"),
            agent.group.label("group"),
            RolloutRow.id.label("rollout"),
            func.coalesce(RolloutHostRow.wave, 0).label("wave"),
            func.coalesce(RolloutRow.wave, 0).label("open_wave"),
        )
        .select_from(agent)
        .join(GroupRow, GroupRow.name == agent.group)
        .join(GroupAppRow, GroupAppRow.group == agent.group)
        .outerjoin(
            AgentAppRow, and_(AgentAppRow.agent_id == agent.id, AgentAppRow.app == GroupAppRow.app)
        )
        .outerjoin(
            ChannelHeadRow,
            and_(
                ChannelHeadRow.app == GroupAppRow.app, ChannelHeadRow.channel == GroupAppRow.channel
            ),
        )
        .outerjoin(
            ReleaseRow,
            and_(
                ReleaseRow.app == ChannelHeadRow.app, ReleaseRow.version == ChannelHeadRow.version
            ),
        )
        .outerjoin(
            RolloutRow,
            and_(
                RolloutRow.app == ChannelHeadRow.app,
                RolloutRow.channel == ChannelHeadRow.channel,
                RolloutRow.version == ChannelHeadRow.version,
                RolloutRow.state.in_(HOLDING),
            ),
        )
        .outerjoin(
            RolloutHostRow,
            and_(RolloutHostRow.rollout_id == RolloutRow.id, RolloutHostRow.agent_id == agent.id),
        )
    )
    reported = (
        select(
            agent.id,
            AgentAppRow.app,
            literal(False),
            cast(literal(""), String),
            cast(null(), String),
            *common,
            _code(agent, assigned=False, cutoffs=cutoffs, held=held, pins=pins),
            literal(False),
            agent.group,
            cast(null(), String),
            literal(0),
            literal(0),
        )
        .select_from(AgentAppRow)
        .join(agent, agent.id == AgentAppRow.agent_id)
        .join(GroupRow, GroupRow.name == agent.group)
        .outerjoin(
            GroupAppRow, and_(GroupAppRow.group == agent.group, GroupAppRow.app == AgentAppRow.app)
        )
        .where(GroupAppRow.app.is_(None))
    )
    if group is not None:
        assigned, reported = (
            assigned.where(agent.group == group),
            reported.where(agent.group == group),
        )
    if app is not None:
        assigned = assigned.where(GroupAppRow.app == app)
        reported = reported.where(AgentAppRow.app == app)
    if agent_ids is not None:
        assigned = assigned.where(agent.id.in_(agent_ids))
        reported = reported.where(agent.id.in_(agent_ids))
    return union_all(assigned, reported).subquery("pairs")


def _matching(
    filters: Filters, cutoffs: Cutoffs, held: Held, pins: Pins
) -> list[ColumnElement[bool]]:
    """WHERE clauses on AgentRow for the filters."""
    out: list[ColumnElement[bool]] = []
    if filters.group is not None:
        out.append(AgentRow.group == filters.group)
    out += [has_label(k, v) for k, v in filters.labels]
    if filters.app is None and filters.code is None and not filters.outdated:
        return out
    pairs = _pairs(cutoffs, held, pins, group=filters.group, app=filters.app, agent_ids=None)
    having = select(pairs.c.agent_id)
    if filters.code is not None:
        having = having.where(pairs.c.code == filters.code.value)
    if filters.outdated:
        having = having.where(pairs.c.code.not_in([c.value for c in FINE_CODES]))
    out.append(AgentRow.id.in_(having))
    return out


async def page(
    tx: Tx,
    filters: Filters,
    cutoffs: Cutoffs,
    held: Held,
    pins: Pins,
    after: str | None,
    limit: int,
) -> tuple[list[AgentRow], int]:
    """Up to `limit` + 1 agents after name `after` (keyset: stable under inserts), and the total."""
    where = _matching(filters, cutoffs, held, pins)
    total = await tx.scalar(select(func.count()).select_from(AgentRow).where(*where))
    stmt = select(AgentRow).where(*where)
    if after is not None:
        stmt = stmt.where(AgentRow.name > after)
    agents = list(await tx.scalars(stmt.order_by(AgentRow.name).limit(limit + 1)))
    return agents, int(total or 0)


async def pairs_of(
    tx: Tx, agent_ids: Sequence[str], app: str | None, cutoffs: Cutoffs, held: Held, pins: Pins
) -> dict[str, list[Pair]]:
    """The apps of these agents (only `app`, if given), by agent id, in app order."""
    out: dict[str, list[Pair]] = {a: [] for a in agent_ids}
    if not agent_ids:
        return out
    p = _pairs(cutoffs, held, pins, group=None, app=app, agent_ids=agent_ids)
    stmt = select(
        p.c.agent_id, p.c.app, p.c.assigned, p.c.channel, p.c.head, p.c.installed, p.c.state,
        p.c.target, p.c.said, p.c.log_tail, p.c.code, p.c.critical, p.c.rollout, p.c.wave,
        p.c.open_wave, p.c.kind, p.c.package, p.c.package_expected, p.c.package_version,
    ).order_by(p.c.agent_id, p.c.app)  # fmt: skip
    for r in await tx.execute(stmt):
        out[r.agent_id].append(
            Pair(
                agent_id=r.agent_id,
                app=r.app,
                assigned=bool(r.assigned),
                channel=r.channel or "",
                head=r.head,
                installed=r.installed,
                state=AppState(r.state or AppState.PENDING.value),
                target=r.target,
                said=r.said,
                log_tail=r.log_tail,
                code=ReasonCode(r.code),
                critical=bool(r.critical),
                rollout=r.rollout,
                wave=int(r.wave or 0),
                open_wave=int(r.open_wave or 0),
                kind=r.kind,
                package=r.package,
                package_expected=r.package_expected,
                package_version=r.package_version,
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class Tally:
    """Agents that share one (app, channel, head, installed, auto_update, assigned, code, group)."""

    app: str
    channel: str
    head: str | None
    installed: str | None
    auto_update: bool
    assigned: bool
    code: ReasonCode
    agents: int
    group: str = ""


async def tallies(tx: Tx, cutoffs: Cutoffs, held: Held, pins: Pins) -> tuple[list[Tally], int, int]:
    """The fleet in aggregate: tallies per app, the number of agents and of outdated ones."""
    p = _pairs(cutoffs, held, pins, group=None, app=None, agent_ids=None)
    keys = (
        p.c.app, p.c.channel, p.c.head, p.c.installed, p.c.auto_update, p.c.assigned, p.c.code,
        p.c.group,
    )  # fmt: skip
    rows = await tx.execute(select(*keys, func.count()).group_by(*keys))
    out = [
        Tally(
            app=r[0],
            channel=r[1] or "",
            head=r[2],
            installed=r[3],
            auto_update=bool(r[4]),
            assigned=bool(r[5]),
            code=ReasonCode(r[6]),
            agents=int(r[8]),
            group=r[7],
        )
        for r in rows
    ]
    agents = await tx.scalar(select(func.count()).select_from(AgentRow))
    outdated_where = _matching(Filters(outdated=True), cutoffs, held, pins)
    outdated = await tx.scalar(select(func.count()).select_from(AgentRow).where(*outdated_where))
    return out, int(agents or 0), int(outdated or 0)


async def policies(tx: Tx) -> dict[str, tuple[float, bool]]:
    """Group -> (poll interval, auto-update): the inputs of each group's offline cutoff."""
    stmt = select(GroupRow.name, GroupRow.poll_interval_s, GroupRow.auto_update)
    return {name: (poll, bool(auto)) for name, poll, auto in await tx.execute(stmt)}
