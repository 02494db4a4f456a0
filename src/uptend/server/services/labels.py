"""Agent labels: set at enrollment, changed by the operator (`uptend fleet label`)."""

from uptend.errors import ConfigError
from uptend.protocol import Agent
from uptend.protocol.labels import MAX_LABELS, parse_change
from uptend.server.services.agents import find as find_agent
from uptend.server.services.context import Context, utcnow
from uptend.server.services.fleet import view_of
from uptend.server.storage import audit, generation
from uptend.server.storage import labels as rows


async def change(
    ctx: Context, actor: str, key: str, items: list[str], *, by_id: bool = False
) -> Agent:
    """Apply `k=v` (set) and `k-` (remove) to the agent's labels; the agent as the view shows it."""
    sets, removes = parse_change(items)
    if not sets and not removes:
        raise ConfigError("no label to change", hint="pass KEY=VALUE to set or KEY- to remove")
    async with ctx.db.transaction() as tx:
        agent = await find_agent(tx, key, by_id=by_id)
        now = await rows.labels_of(tx, [agent.id])
        after = {k: v for k, v in {**now[agent.id], **sets}.items() if k not in removes}
        if len(after) > MAX_LABELS:
            raise ConfigError(
                f"agent {agent.name} would have {len(after)} labels, more than {MAX_LABELS}",
                hint="remove some with KEY-",
            )
        await rows.change(tx, agent.id, sets, removes)
        await generation.bump(tx)  # what is decided by label (caps, commands) sees it at once
        audit.record(tx, utcnow(), actor, "agent.label", f"{agent.name}: {' '.join(items)}")
        return await view_of(tx, agent)
