"""Queries on admin and enrollment tokens (stored as digests only)."""

from datetime import datetime

from sqlalchemy import select

from uptend.server.storage.db import Tx
from uptend.server.storage.tables import TokenRow


async def add(tx: Tx, kind: str, token_hash: str, now: datetime) -> None:
    tx.add(TokenRow(kind=kind, token_hash=token_hash, created_at=now, revoked=False))
    await tx.flush()


async def find(tx: Tx, kind: str, token_hash: str) -> TokenRow | None:
    stmt = select(TokenRow).where(
        TokenRow.token_hash == token_hash, TokenRow.kind == kind, TokenRow.revoked.is_(False)
    )
    return await tx.scalar(stmt)
