"""An agent's credential as the operator manages it: revoke, rotate, remove.

Each change bumps the credentials counter in its own transaction: every server process
sharing the database drops the credentials it remembers at its next request (what agents
should run, kept under the generation, stays remembered), so a revoked or removed
agent is refused at its next check-in wherever it lands. A rotation hands the agent a new
credential at its next check-in (`auth.hand_over`); the old one works until the new one is
first used (`auth` then makes the new one the agent's own).
"""

from uptend.errors import ConflictError, NotFoundError
from uptend.protocol.credentials import AgentRef
from uptend.server.services.context import Context, utcnow
from uptend.server.storage import agents as rows
from uptend.server.storage import audit, generation
from uptend.server.storage.db import Tx
from uptend.server.storage.tables import AgentRow


async def find(tx: Tx, key: str, *, by_id: bool = False) -> AgentRow:
    """The agent named `key`, or with id `key` (never either: a name cannot look like an id)."""
    agent = await (rows.by_id(tx, key) if by_id else rows.by_name(tx, key))
    if agent is None:
        what = f"with id {key!r}" if by_id else f"named {key!r}"
        raise NotFoundError(
            f"no agent {what}",
            hint="list the agents with `uptend fleet list`"
            + ("" if by_id else "; pass --id for an agent id"),
        )
    return agent


def ref(agent: AgentRow) -> AgentRef:
    return AgentRef(
        id=agent.id,
        name=agent.name,
        group=agent.group,
        revoked=agent.revoked_at is not None,
        rotating=agent.rotate_requested_at is not None,
    )


async def revoke(ctx: Context, actor: str, key: str, *, by_id: bool = False) -> AgentRef:
    """Refuse the agent's credential from now on (and any credential it is being handed)."""
    now = utcnow()
    async with ctx.db.transaction() as tx:
        agent = await find(tx, key, by_id=by_id)
        if agent.revoked_at is None:
            agent.revoked_at = now
            agent.rotate_requested_at = None
            agent.pending_credential_hash = None
            await generation.bump_credentials(tx)
            audit.record(tx, now, actor, "agent.revoke", f"{agent.name} ({agent.id})")
        return ref(agent)


async def rotate(ctx: Context, actor: str, key: str, *, by_id: bool = False) -> AgentRef:
    """Hand the agent a new credential at its next check-in."""
    now = utcnow()
    async with ctx.db.transaction() as tx:
        agent = await find(tx, key, by_id=by_id)
        if agent.revoked_at is not None:
            raise ConflictError(
                f"agent {agent.name} is revoked: it has no credential to rotate",
                hint=f"remove it with `uptend agent remove {agent.name}` and enroll it again",
            )
        agent.rotate_requested_at = now
        await generation.bump_credentials(tx)  # remembered credentials learn that a rotation is due
        audit.record(tx, now, actor, "agent.rotate_credential", f"{agent.name} ({agent.id})")
        return ref(agent)


async def remove(ctx: Context, actor: str, key: str, *, by_id: bool = False) -> AgentRef:
    """Forget the agent: gone from the fleet view, its credential refused; audited."""
    now = utcnow()
    async with ctx.db.transaction() as tx:
        agent = await find(tx, key, by_id=by_id)
        gone = ref(agent)
        seen = agent.last_seen.isoformat(timespec="seconds") if agent.last_seen else "never"
        await rows.remove(tx, agent.id)
        await generation.bump_credentials(tx)
        audit.record(
            tx,
            now,
            actor,
            "agent.remove",
            f"{agent.name} ({agent.id}) of group {agent.group}, enrolled "
            f"{agent.enrolled_at.isoformat(timespec='seconds')}, last seen {seen}, "
            f"agent version {agent.agent_version or '-'}",
        )
    return gone
