"""The agent's side: enrollment, then check-ins (state in, directives out)."""

import uuid

from uptend.errors import AuthError, ConfigError, NotFoundError
from uptend.policy.desired import Decision, desired_version
from uptend.protocol import (
    AppDirective,
    AppState,
    CheckIn,
    Directives,
    EnrollRequest,
    EnrollResponse,
)
from uptend.protocol.names import check_name
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


async def plan_of(tx: Tx, group: GroupRow) -> dict[str, tuple[str, list[str]]]:
    """Assigned app -> (channel, versions on that channel) for one group."""
    assigned = (await group_rows.apps_of(tx, [group.name]))[group.name]
    versions = await release_rows.versions_by_channel(tx, [(a.app, a.channel) for a in assigned])
    return {a.app: (a.channel, versions[(a.app, a.channel)]) for a in assigned}


def decide(
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
        for app, (channel, versions) in (await plan_of(tx, group)).items():
            row = existing.get(app)
            decision = decide(group, app, channel, versions, row.installed if row else None)
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
