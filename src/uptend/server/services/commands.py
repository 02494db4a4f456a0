"""Operator commands: queued as rows, handed out at check-in until acknowledged, audited.

Delivery is at least once (a command stays pending, and is handed out again, until a
check-in acknowledges it); the agent carries each id out at most once (it records the ids
it has run), so together: exactly once. A command past its expiry is never handed out.
"""

from datetime import timedelta

from uptend.errors import ConfigError, NotFoundError
from uptend.protocol import Directives
from uptend.protocol.agent_api import Command, CommandAck
from uptend.protocol.commands import CommandAction, CommandSend, CommandState, CommandView
from uptend.protocol.labels import parse_label
from uptend.server.services.agents import find as find_agent
from uptend.server.services.context import Context, utcnow
from uptend.server.storage import audit
from uptend.server.storage import commands as rows

LIST_LIMIT = 1000
STOPPED_BY_OPERATOR = "stopped by operator"  # what an agent says of an app it stopped so


async def send(ctx: Context, actor: str, body: CommandSend) -> list[CommandView]:
    """Queue the command for one agent, a whole group or every agent with a label; wake them."""
    if [body.agent, body.group, body.label].count(None) != 2:
        raise ConfigError(
            "name one agent, one group or one label",
            hint="pass AGENT, --group GROUP or --label KEY=VALUE",
        )
    if body.action is CommandAction.RETRY and body.app is None:
        raise ConfigError("retry needs the app to retry", hint="pass --app APP")
    now = utcnow()
    expires = None if body.expires_s is None else now + timedelta(seconds=body.expires_s)
    async with ctx.db.transaction() as tx:
        if body.agent is not None:
            agent = await find_agent(tx, body.agent, by_id=body.by_id)
            targets = [agent.id]
        elif body.group is not None:
            targets = await rows.agents_of_group(await tx.connection(), body.group)
            if not targets:
                raise NotFoundError(
                    f"group {body.group} has no agents",
                    hint="see the groups and their agents with `uptend fleet list`",
                )
        else:
            assert body.label is not None
            key, value = parse_label(body.label)
            targets = await rows.agents_with_label(await tx.connection(), key, value)
            if not targets:
                raise NotFoundError(
                    f"no agent has the label {body.label}",
                    hint="see the agents and their labels with `uptend fleet list`",
                )
        conn = await tx.connection()
        base = {
            "action": body.action.value,
            "app": body.app,
            "state": rows.PENDING,
            "result": "",
            "sent_by": actor,
            "created_at": now,
            "expires_at": expires,
        }
        ids = await rows.add(conn, [{**base, "agent_id": a} for a in targets])
        await ctx.hub.notify_commands(conn, list(zip(targets, ids, strict=True)))
        whom = body.agent or (f"group {body.group}" if body.group else f"label {body.label}")
        what = f"{body.action.value}{' ' + body.app if body.app else ''} -> {whom}"
        audit.record(tx, now, actor, "command.send", f"{what} (ids {ids[0]}..{ids[-1]})")
    for agent_id, command_id in zip(targets, ids, strict=True):
        ctx.hub.commanded(agent_id, command_id)
    return await listing(ctx, agent_id=None, state=None, ids=set(ids))


async def listing(
    ctx: Context,
    *,
    agent: str | None = None,
    by_id: bool = False,
    agent_id: str | None = None,
    state: CommandState | None = None,
    ids: set[int] | None = None,
    limit: int = LIST_LIMIT,
) -> list[CommandView]:
    now = utcnow()
    async with ctx.db.transaction() as tx:
        if agent is not None:
            agent_id = (await find_agent(tx, agent, by_id=by_id)).id
        found = await rows.listing(
            await tx.connection(), agent_id, state.value if state else None, limit
        )
    views = []
    for r in found:
        if ids is not None and r.id not in ids:
            continue
        shown = r.state
        if shown == rows.PENDING and r.expires_at is not None and r.expires_at <= now:
            shown = CommandState.EXPIRED.value  # not handed out any more
        if state is not None and shown != state.value:
            continue
        views.append(
            CommandView(
                id=r.id,
                agent_id=r.agent_id,
                agent=r.name,
                action=r.action,
                app=r.app,
                state=CommandState(shown),
                result=r.result,
                sent_by=r.sent_by,
                created_at=r.created_at,
                expires_at=r.expires_at,
                acked_at=r.acked_at,
            )
        )
    return views


async def at_checkin(ctx: Context, agent_id: str, acks: list[CommandAck]) -> list[Command]:
    """Record the agent's acknowledgements; the commands it still has to carry out.

    Called only for agents with acks or in `hub.pending`: the idle check-in never gets here.
    """
    now = utcnow()
    if acks:
        async with ctx.db.write() as conn:
            await rows.ack(conn, agent_id, [(a.id, a.state.value, a.result) for a in acks], now)
    if agent_id not in ctx.hub.pending:
        return []
    seen = ctx.hub.seq  # a command queued while we read keeps the agent pending
    async with ctx.db.read() as conn:
        pending = await rows.pending_of(conn, agent_id)
    late = [r.id for r in pending if r.expires_at is not None and r.expires_at <= now]
    if late:
        async with ctx.db.write() as conn:
            await rows.expire(conn, late, now)
    live = [
        Command(id=r.id, action=r.action, app=r.app, expires_at=r.expires_at)
        for r in pending
        if r.id not in late
    ]
    if not live and ctx.hub.seq == seen:
        ctx.hub.pending.discard(agent_id)
    return live


def with_commands(answer: Directives, commands: list[Command]) -> Directives:
    return answer.model_copy(update={"commands": commands}) if commands else answer
