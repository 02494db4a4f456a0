"""The change counter: every write that changes what agents should run bumps it."""

from sqlalchemy import select, update

from uptend.server.storage.db import AsyncConnection, Tx
from uptend.server.storage.tables import GenerationRow


async def current(tx: Tx) -> int:
    value = await tx.scalar(select(GenerationRow.value).where(GenerationRow.id == 1))
    assert value is not None  # the migration inserts the row
    return value


async def bump(tx: Tx | AsyncConnection) -> None:
    """Part of the caller's transaction: the change and the new generation commit together."""
    await tx.execute(
        update(GenerationRow).where(GenerationRow.id == 1).values(value=GenerationRow.value + 1)
    )
