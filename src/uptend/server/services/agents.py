"""Agents: enrollment, check-in (state in, directives out), and the fleet view."""

import uuid

from uptend.errors import AuthError, ConfigError, NotFoundError
from uptend.policy.desired import Decision, desired_version, is_outdated
from uptend.protocol import (
    Agent,
    AgentApp,
    AppDirective,
    AppState,
    CheckIn,
    Directives,
    EnrollRequest,
    EnrollResponse,
)
from uptend.protocol.names import check_name
from uptend.protocol.versions import newest
from uptend.server import tokens
from uptend.server.services.auth import require_agent
from uptend.server.services.context import Context, utcnow
from uptend.server.storage import agents as rows
from uptend.server.storage import audit
from uptend.server.storage import groups as group_rows
from uptend.server.storage import releases as release_rows
from uptend.server.storage import tokens as token_rows
from uptend.server.storage.db import Tx
from uptend.server.storage.tables import AgentAppRow, AgentRow, GroupRow, ReportRow

FAILED_OUTCOMES = {"failed", "rolled_back", "rollback_failed"}


async def enroll(ctx: Context, request: EnrollRequest, base_url: str) -> EnrollResponse:
    check_name("group", request.group)
    name = request.name.strip()
    if not name or len(name) > 128:
        raise ConfigError("agent name must be 1-128 characters", hint="pass --name")
    credential = tokens.new_secret(tokens.AGENT_PREFIX)
    async with ctx.db.transaction() as tx:
        wanted = tokens.digest(request.token)
        token = await token_rows.find(tx, "enroll", wanted)
        if token is None or not tokens.same_digest(token.token_hash, wanted):
            raise AuthError(
                "the enrollment token is not valid",
                hint="use the enroll_token printed by `uptend server init`",
            )
        group = await group_rows.get(tx, request.group)
        if group is None:
            raise NotFoundError(
                f"group {request.group} does not exist",
                hint=f"create it with `uptend group set {request.group} --app APP`",
            )
        now = utcnow()
        agent = AgentRow(
            id=uuid.uuid4().hex,
            name=name,
            group=group.name,
            credential_hash=tokens.digest(credential),
            enrolled_at=now,
        )
        await rows.add(tx, agent)
        audit.record(tx, now, f"token#{token.id}", "agent.enroll", f"{name} into {group.name}")
    return EnrollResponse(
        agent_id=agent.id,
        credential=credential,
        root=ctx.repo.initial_root().decode(),
        metadata_url=f"{base_url}tuf/metadata/",
        targets_url=f"{base_url}tuf/targets/",
        poll_interval_s=group.poll_interval_s,
    )


async def _plan(tx: Tx, group: GroupRow) -> dict[str, tuple[str, list[str]]]:
    """Assigned app -> (channel, versions on that channel) for one group."""
    assigned = (await group_rows.apps_of(tx, [group.name]))[group.name]
    versions = await release_rows.versions_by_channel(tx, [(a.app, a.channel) for a in assigned])
    return {a.app: (a.channel, versions[(a.app, a.channel)]) for a in assigned}


def _decide(
    group: GroupRow, app: str, channel: str, versions: list[str], installed: str | None
) -> Decision:
    return desired_version(
        app=app,
        channel=channel,
        group=group.name,
        releases=versions,
        installed=installed,
        auto_update=group.auto_update,
    )


async def checkin(ctx: Context, authorization: str | None, body: CheckIn) -> Directives:
    """Record what the agent says, answer what it should run."""
    async with ctx.db.transaction() as tx:
        agent = await require_agent(tx, authorization)
        now = utcnow()
        rows.touch(agent, now, body.agent_version)
        group = await group_rows.get(tx, agent.group)
        assert group is not None  # agents.group is a foreign key
        existing = (await rows.apps_of(tx, [agent.id]))[agent.id]
        for status in body.apps:
            row = existing.get(status.app)
            if row is None:
                row = AgentAppRow(agent_id=agent.id, app=status.app, retry=False, log_tail="")
                tx.add(row)
                existing[status.app] = row
            row.installed = status.version
            row.state = status.state.value
            row.target = status.target
            row.reason = status.reason
            row.updated_at = now
            if status.state is not AppState.FAILED:
                row.log_tail = ""
        for report in body.reports:
            rows.add_report(
                tx,
                ReportRow(
                    agent_id=agent.id,
                    app=report.app,
                    version=report.version,
                    outcome=report.outcome,
                    reason=report.reason,
                    log_tail=report.log_tail,
                    at=report.at,
                ),
            )
            row = existing.get(report.app)
            if row is not None and report.outcome in FAILED_OUTCOMES:
                row.log_tail = report.log_tail
        directives: list[AppDirective] = []
        retry: list[str] = []
        for app, (channel, versions) in (await _plan(tx, group)).items():
            row = existing.get(app)
            decision = _decide(group, app, channel, versions, row.installed if row else None)
            targets = {r.version: r.target for r in await release_rows.listing(tx, app)}
            directives.append(
                AppDirective(
                    app=app,
                    version=decision.version,
                    reason=decision.reason,
                    target=targets.get(decision.version or ""),
                )
            )
            if row is not None and row.retry:
                retry.append(app)
                row.retry = False
    return Directives(poll_interval_s=group.poll_interval_s, apps=directives, retry=retry)


async def _view(tx: Tx, agents: list[AgentRow]) -> list[Agent]:
    groups = {g.name: g for g in await group_rows.listing(tx)}
    plans = {name: await _plan(tx, g) for name, g in groups.items()}
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
                decision = _decide(group, app, channel, versions, installed)
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
        audit.record(tx, utcnow(), actor, "fleet.retry", f"{agent.name} {app}")
