"""Queries on admin and enrollment tokens (stored as digests only)."""

from datetime import datetime

from sqlalchemy import func, or_, select, update

from uptend.server.storage.db import Tx
from uptend.server.storage.tables import TokenRow


async def add(
    tx: Tx,
    kind: str,
    token_hash: str,
    now: datetime,
    *,
    name: str = "",
    group: str | None = None,
    expires_at: datetime | None = None,
    max_uses: int | None = None,
) -> TokenRow:
    row = TokenRow(
        kind=kind,
        token_hash=token_hash,
        created_at=now,
        revoked=False,
        name=name,
        group=group,
        expires_at=expires_at,
        max_uses=max_uses,
        uses=0,
    )
    tx.add(row)
    await tx.flush()
    return row


async def by_digest(tx: Tx, token_hash: str) -> TokenRow | None:
    """The token with this digest, live or not: the caller says why a dead one is refused."""
    return await tx.scalar(select(TokenRow).where(TokenRow.token_hash == token_hash))


async def by_id(tx: Tx, token_id: int) -> TokenRow | None:
    return await tx.get(TokenRow, token_id)


async def listing(tx: Tx) -> list[TokenRow]:
    return list(await tx.scalars(select(TokenRow).order_by(TokenRow.id)))


async def use(tx: Tx, token_id: int, now: datetime) -> bool:
    """Count one use, unless that would exceed `max_uses` (False: used up, nothing written).

    One conditional UPDATE: two enrollments racing for the last use cannot both win.
    """
    result = await tx.execute(
        update(TokenRow)
        .where(
            TokenRow.id == token_id,
            or_(TokenRow.max_uses.is_(None), TokenRow.uses < TokenRow.max_uses),
        )
        .values(uses=TokenRow.uses + 1, last_used=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def live_admins(tx: Tx, now: datetime) -> int:
    """Admin tokens neither revoked nor expired: revoking the last one would lock you out."""
    stmt = select(func.count()).where(
        TokenRow.kind == "admin",
        TokenRow.revoked.is_(False),
        or_(TokenRow.expires_at.is_(None), TokenRow.expires_at > now),
    )
    return int(await tx.scalar(stmt) or 0)
