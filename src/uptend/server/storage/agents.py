"""Queries on agents, their per-app state and their reports."""

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from uptend.errors import ConflictError
from uptend.server.storage.db import Tx
from uptend.server.storage.tables import AgentAppRow, AgentLabelRow, AgentRow, ReportRow


async def add(tx: Tx, row: AgentRow) -> None:
    tx.add(row)
    try:
        await tx.flush()
    except IntegrityError:
        raise ConflictError(
            f"an agent named {row.name!r} is already enrolled",
            hint=f"pick another --name, or remove the old agent first: "
            f"`uptend agent remove {row.name}`",
        ) from None


async def by_name(tx: Tx, name: str) -> AgentRow | None:
    return await tx.scalar(select(AgentRow).where(AgentRow.name == name))


async def by_id(tx: Tx, agent_id: str) -> AgentRow | None:
    return await tx.get(AgentRow, agent_id)


async def remove(tx: Tx, agent_id: str) -> None:
    """Delete the agent with its per-app rows and reports (the audit log keeps its story)."""
    for table in (ReportRow, AgentAppRow, AgentLabelRow):
        await tx.execute(delete(table).where(table.agent_id == agent_id))
    await tx.execute(delete(AgentRow).where(AgentRow.id == agent_id))


async def listing(tx: Tx) -> list[AgentRow]:
    return list(await tx.scalars(select(AgentRow).order_by(AgentRow.name)))


async def apps_of(tx: Tx, agent_ids: list[str]) -> dict[str, dict[str, AgentAppRow]]:
    out: dict[str, dict[str, AgentAppRow]] = {a: {} for a in agent_ids}
    if not agent_ids:
        return out
    stmt = select(AgentAppRow).where(AgentAppRow.agent_id.in_(agent_ids))
    for row in await tx.scalars(stmt):
        out[row.agent_id][row.app] = row
    return out


async def app_row(tx: Tx, agent_id: str, app: str) -> AgentAppRow | None:
    return await tx.get(AgentAppRow, (agent_id, app))


async def reports_of(tx: Tx, agent_id: str, limit: int) -> list[ReportRow]:
    stmt = (
        select(ReportRow)
        .where(ReportRow.agent_id == agent_id)
        .order_by(ReportRow.at.desc(), ReportRow.id.desc())
        .limit(limit)
    )
    return list(await tx.scalars(stmt))
