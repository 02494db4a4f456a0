"""The operator's view of the fleet: who runs what and why; retry a failed version.

Filtering, paging and counting happen in the database (`storage.fleet`); this module turns
a page of rows into wire models, with each app's typed reason worded by `policy.desired`.
"""

import base64
import binascii
import json
from collections import defaultdict
from datetime import datetime, timedelta

from uptend.errors import ConfigError, NotFoundError
from uptend.policy.desired import (
    LAST_SEEN_MAX_LAG_S,
    AppFacts,
    desired_version,
    explain,
    offline_after_s,
)
from uptend.policy.rollout import Held
from uptend.policy.schedule import Wait, may_install
from uptend.protocol import (
    Agent,
    AgentApp,
    AgentDetail,
    AgentPage,
    AppSummary,
    FleetSummary,
    PackageView,
    ReasonCode,
    ReportView,
)
from uptend.protocol.commands import CommandAction, CommandSend, CommandView
from uptend.protocol.labels import parse_labels
from uptend.protocol.packages import drift
from uptend.protocol.reasons import FINE_CODES
from uptend.server.services import commands
from uptend.server.services.agents import find as find_agent
from uptend.server.services.commands import STOPPED_BY_OPERATOR
from uptend.server.services.context import Context, utcnow
from uptend.server.services.pins import PinPlan, resolutions
from uptend.server.services.schedule import schedule_of
from uptend.server.storage import agents as rows
from uptend.server.storage import fleet as queries
from uptend.server.storage import labels as label_rows
from uptend.server.storage import schedule as schedule_rows
from uptend.server.storage.db import Tx
from uptend.server.storage.tables import AgentRow

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def _cursor(name: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": name}).encode()).decode().rstrip("=")


def _after(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        after = data["after"]
        if isinstance(after, str):
            return after
    except (ValueError, binascii.Error, KeyError, TypeError):
        pass
    raise ConfigError(
        f"the cursor {cursor[:40]!r} is not valid",
        hint="pass the next_cursor of the previous page unchanged, or no --cursor to start over",
    )


def _reason_code(reason: str | None) -> ReasonCode | None:
    if reason is None:
        return None
    try:
        return ReasonCode(reason)
    except ValueError:
        codes = " ".join(c.value for c in ReasonCode)
        raise ConfigError(f"unknown reason code {reason!r}", hint=f"use one of: {codes}") from None


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise ConfigError(
            f"limit must be between 1 and {MAX_LIMIT}, not {limit}",
            hint="page through a larger fleet with the next_cursor each page returns",
        )


def _cutoffs(policies: dict[str, tuple[float, bool]], now: datetime) -> dict[str, datetime]:
    return {g: now - timedelta(seconds=offline_after_s(p)) for g, (p, _) in policies.items()}


async def _waits(tx: Tx, groups: list[str], now: datetime) -> dict[str, Wait]:
    """Group -> what its schedule says of a (non-critical) install now, where it says wait."""
    windows = await schedule_rows.windows_of(tx)
    freeze = await schedule_rows.freeze(tx)
    out = {}
    for group in groups:
        verdict = may_install(schedule_of(windows.get(group, []), freeze), at=now)
        if isinstance(verdict, Wait):
            out[group] = verdict
    return out


def _rollout_held(p: queries.Pair) -> Held | None:
    """How the fleet view words a rollout's hold on this host (the code is the query's)."""
    if p.rollout is None:
        return None
    if p.code is ReasonCode.HALTED:
        why = f"rollout {p.rollout} halted (or was aborted) before this host took {p.head}"
    elif p.code is ReasonCode.CONCURRENCY_CAP:
        why = f"rollout {p.rollout}: the cap on hosts installing at once is full"
    elif p.wave > p.open_wave:
        why = f"waiting for wave {p.wave + 1}: opens after wave {p.open_wave + 1} soaks"
    else:
        why = f"rollout {p.rollout} is paused"
    return Held(p.rollout, p.wave, why)


def _package(p: queries.Pair) -> PackageView | None:
    if p.package is None or p.package_expected is None:
        return None
    return PackageView(
        name=p.package,
        version=p.package_version,
        expected=p.package_expected,
        drift=drift(p.package, p.package_version, p.package_expected),
    )


def _held(waits: dict[str, Wait]) -> queries.Held:
    return {g: w.code for g, w in waits.items()}


def _pins(plans: dict[tuple[str, str], PinPlan]) -> queries.Pins:
    return {k: (p.resolved.version, p.resolved.code) for k, p in plans.items()}


async def _views(tx: Tx, agents: list[AgentRow], app: str | None, now: datetime) -> list[Agent]:
    policies = await queries.policies(tx)
    cutoffs = _cutoffs(policies, now)
    waits = await _waits(tx, list(policies), now)
    plans = await resolutions(tx)
    ids = [a.id for a in agents]
    pairs = await queries.pairs_of(tx, ids, app, cutoffs, _held(waits), _pins(plans))
    labels = await label_rows.labels_of(tx, ids)
    out: list[Agent] = []
    for agent in agents:
        apps: list[AgentApp] = []
        for p in pairs[agent.id]:
            pin = plans.get((agent.group, p.app)) if p.assigned else None
            facts = AppFacts(
                app=p.app,
                group=agent.group,
                auto_update=policies[agent.group][1],
                assigned=p.assigned,
                channel=p.channel,
                head=p.head,
                installed=p.installed,
                state=p.state,
                target=p.target,
                said=p.said,
                log_tail=p.log_tail,
                last_seen=agent.last_seen,
                enrolled_at=agent.enrolled_at,
                offline_after_s=offline_after_s(policies[agent.group][0]),
                wait=waits.get(agent.group),
                resolved=pin.resolved if pin else None,
                pin=pin.pin if pin else None,
                floor=pin.floor if pin else None,
                held=_rollout_held(p),
            )
            apps.append(
                AgentApp(
                    app=p.app,
                    installed=p.installed,
                    desired=facts.desired(),
                    newest=p.head if p.assigned else p.installed,
                    state=p.state,
                    reason=explain(p.code, facts),
                    log_tail=p.log_tail,
                    critical=p.critical,
                    stopped_by_operator=p.state == "stopped" and p.said == STOPPED_BY_OPERATOR,
                    kind=p.kind,
                    package=_package(p),
                )
            )
        out.append(
            Agent(
                id=agent.id,
                name=agent.name,
                group=agent.group,
                last_seen=agent.last_seen,
                agent_version=agent.agent_version,
                outdated=any(a.reason.code not in FINE_CODES for a in apps),
                apps=apps,
                revoked=agent.revoked_at is not None,
                labels=labels[agent.id],
            )
        )
    return out


async def view_of(tx: Tx, agent: AgentRow) -> Agent:
    """One agent as the fleet view shows it."""
    [view] = await _views(tx, [agent], None, utcnow())
    return view


async def page(
    ctx: Context,
    *,
    outdated: bool = False,
    reason: str | None = None,
    group: str | None = None,
    app: str | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
    labels: list[str] | None = None,
) -> AgentPage:
    """One page of the fleet in name order, filtered in the database (`labels`: k=v, all)."""
    _check_limit(limit)
    after = _after(cursor)
    filters = queries.Filters(
        group=group,
        app=app,
        code=_reason_code(reason),
        outdated=outdated,
        labels=tuple(parse_labels(labels or []).items()),
    )
    now = utcnow()
    async with ctx.db.transaction() as tx:
        policies = await queries.policies(tx)
        cutoffs = _cutoffs(policies, now)
        held = _held(await _waits(tx, list(policies), now))
        pins = _pins(await resolutions(tx))
        found, total = await queries.page(tx, filters, cutoffs, held, pins, after, limit)
        views = await _views(tx, found[:limit], app, now)
    return AgentPage(
        agents=views,
        total=total,
        next_cursor=_cursor(found[limit - 1].name) if len(found) > limit else None,
        last_seen_max_lag_s=LAST_SEEN_MAX_LAG_S,
    )


async def summary(ctx: Context) -> FleetSummary:
    """Per app: versions installed, the share on the desired version, agents per reason."""
    async with ctx.db.transaction() as tx:
        now = utcnow()
        policies = await queries.policies(tx)
        held = _held(await _waits(tx, list(policies), now))
        plans = await resolutions(tx)
        cutoffs = _cutoffs(policies, now)
        tallies, agents, outdated = await queries.tallies(tx, cutoffs, held, _pins(plans))
    count: dict[str, int] = defaultdict(int)
    on_desired: dict[str, int] = defaultdict(int)
    versions: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    reasons: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for t in tallies:
        count[t.app] += t.agents
        versions[t.app][t.installed or "none"] += t.agents
        reasons[t.app][t.code.value] += t.agents
        desired = desired_version(
            app=t.app,
            channel=t.channel,
            group="",
            releases=[t.head] if t.head else [],
            installed=t.installed,
            auto_update=t.auto_update,
            resolved=pin.resolved if (pin := plans.get((t.group, t.app))) else None,
        ).version
        if t.assigned and t.installed is not None and t.installed == desired:
            on_desired[t.app] += t.agents
    return FleetSummary(
        agents=agents,
        outdated=outdated,
        apps=[
            AppSummary(
                app=app,
                agents=n,
                versions=dict(sorted(versions[app].items())),
                on_desired=on_desired[app],
                share_on_desired=round(on_desired[app] / n, 4),
                reasons=dict(sorted(reasons[app].items())),
            )
            for app, n in sorted(count.items())
        ],
    )


async def show(ctx: Context, key: str, *, by_id: bool = False) -> AgentDetail:
    now = utcnow()
    async with ctx.db.transaction() as tx:
        agent = await find_agent(tx, key, by_id=by_id)
        [view] = await _views(tx, [agent], None, now)
        reports = await rows.reports_of(tx, agent.id, 20)
    return AgentDetail(
        agent=view,
        reports=[
            ReportView(
                app=r.app,
                version=r.version,
                outcome=r.outcome,
                reason=r.reason,
                log_tail=r.log_tail,
                at=r.at,
            )
            for r in reports
        ],
    )


async def retry(
    ctx: Context, actor: str, key: str, app: str, *, by_id: bool = False
) -> CommandView:
    """A `retry` command: delivered at least once and run once, like every command.

    (It was a flag on the app's row, cleared when the directives were computed: an answer
    lost on the way lost the retry.)
    """
    async with ctx.db.transaction() as tx:
        agent = await find_agent(tx, key, by_id=by_id)
        row = await rows.app_row(tx, agent.id, app)
        if row is None:
            raise NotFoundError(
                f"agent {agent.name} has not reported app {app}",
                hint=f"see its apps with `uptend fleet show {agent.name}`",
            )
    body = CommandSend(action=CommandAction.RETRY, agent=agent.id, by_id=True, app=app)
    [sent] = await commands.send(ctx, actor, body)
    return sent
