"""Queries on agents, their per-app state and their reports."""

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from uptend.errors import ConflictError
from uptend.server.storage.db import Tx
from uptend.server.storage.tables import AgentAppRow, AgentRow, ReportRow


async def add(tx: Tx, row: AgentRow) -> None:
    tx.add(row)
    try:
        await tx.flush()
    except IntegrityError:
        raise ConflictError(
            f"an agent named {row.name!r} is already enrolled",
            hint="pick another --name, or remove the old agent first",
        ) from None


async def by_id_or_name(tx: Tx, key: str) -> AgentRow | None:
    stmt = select(AgentRow).where((AgentRow.id == key) | (AgentRow.name == key))
    return await tx.scalar(stmt)


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
