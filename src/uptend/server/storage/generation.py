"""The change counters: `bump` for what agents should run, `bump_credentials` for who may call.

Kept apart so that a publish (which moves the generation) leaves every remembered credential
in place, and a revocation (which moves the credentials counter) leaves every group plan.
"""

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


async def bump_credentials(tx: Tx | AsyncConnection) -> None:
    """Part of the caller's transaction: every process forgets the credentials it remembers."""
    await tx.execute(
        update(GenerationRow)
        .where(GenerationRow.id == 1)
        .values(credentials=GenerationRow.credentials + 1)
    )
