"""The operator's view of the fleet: who runs what and why; retry a failed version."""

from uptend.errors import NotFoundError
from uptend.policy.desired import Decision, is_outdated
from uptend.protocol import Agent, AgentApp, AppState
from uptend.protocol.versions import newest
from uptend.server.services.checkin import decide, plan_of
from uptend.server.services.context import Context, utcnow
from uptend.server.storage import agents as rows
from uptend.server.storage import audit, generation
from uptend.server.storage import groups as group_rows
from uptend.server.storage.db import Tx
from uptend.server.storage.tables import AgentRow, ReportRow


async def _view(tx: Tx, agents: list[AgentRow]) -> list[Agent]:
    groups = {g.name: g for g in await group_rows.listing(tx)}
    plans = {name: await plan_of(tx, g) for name, g in groups.items()}
    states = await rows.apps_of(tx, [a.id for a in agents])
    out: list[Agent] = []
    for agent in agents:
        group = groups[agent.group]
        reported = states[agent.id]
        apps: list[AgentApp] = []
        for app in sorted(set(plans[agent.group]) | set(reported)):
            row = reported.get(app)
            installed = row.installed if row else None
            state = AppState(row.state) if row else AppState.PENDING
            channel, versions = plans[agent.group].get(app, ("", []))
            if channel:
                decision = decide(group, app, channel, versions, installed)
                latest = newest(versions)
            else:
                decision = Decision(installed, f"{app} is no longer assigned to {group.name}")
                latest = installed
            reason = row.reason if row is not None and row.reason else decision.reason
            apps.append(
                AgentApp(
                    app=app,
                    installed=installed,
                    desired=decision.version,
                    newest=latest,
                    state=state,
                    reason=reason,
                    log_tail=row.log_tail if row else "",
                )
            )
        outdated = any(
            is_outdated(a.installed, a.newest) or a.state is AppState.FAILED for a in apps
        )
        out.append(
            Agent(
                id=agent.id,
                name=agent.name,
                group=agent.group,
                last_seen=agent.last_seen,
                agent_version=agent.agent_version,
                outdated=outdated,
                apps=apps,
            )
        )
    return out


async def fleet(ctx: Context, *, outdated: bool) -> list[Agent]:
    async with ctx.db.transaction() as tx:
        view = await _view(tx, await rows.listing(tx))
    return [a for a in view if a.outdated] if outdated else view


async def _find(tx: Tx, key: str) -> AgentRow:
    agent = await rows.by_id_or_name(tx, key)
    if agent is None:
        raise NotFoundError(
            f"agent {key!r} does not exist", hint="list the agents with `uptend fleet list`"
        )
    return agent


async def show(ctx: Context, key: str) -> tuple[Agent, list[ReportRow]]:
    async with ctx.db.transaction() as tx:
        agent = await _find(tx, key)
        return (await _view(tx, [agent]))[0], await rows.reports_of(tx, agent.id, 20)


async def retry(ctx: Context, actor: str, key: str, app: str) -> None:
    async with ctx.db.transaction() as tx:
        agent = await _find(tx, key)
        row = await rows.app_row(tx, agent.id, app)
        if row is None:
            raise NotFoundError(
                f"agent {agent.name} has not reported app {app}",
                hint=f"see its apps with `uptend fleet show {agent.name}`",
            )
        row.retry = True
        await generation.bump(tx)
        audit.record(tx, utcnow(), actor, "fleet.retry", f"{agent.name} {app}")
