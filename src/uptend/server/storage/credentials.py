"""The authentication path's statements, in SQLAlchemy Core (built once, like `hotpath`).

Run only when a credential is not in the process's memory: at most once per credential and
generation, plus the rare writes of a credential rotation.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, select, update

from uptend.server.storage.db import TOKEN_USE, AsyncConnection
from uptend.server.storage.tables import AgentRow, TokenRow

AGENTS = cast(Table, AgentRow.__table__)
TOKENS = cast(Table, TokenRow.__table__)


@dataclass(frozen=True, slots=True)
class AgentCredential:
    id: str
    name: str
    group: str
    digest: str  # the credential_hash or pending_credential_hash that matched
    revoked_at: datetime | None
    rotating: bool  # an `agent rotate-credential` is outstanding
    pending: bool  # the digest is the handed-over credential, used for the first time


@dataclass(frozen=True, slots=True)
class TokenCredential:
    id: int
    kind: str
    name: str
    digest: str
    revoked: bool
    expires_at: datetime | None


_AGENT_COLUMNS = (
    AGENTS.c.id,
    AGENTS.c.name,
    AGENTS.c.group,
    AGENTS.c.revoked_at,
    AGENTS.c.rotate_requested_at,
)
_BY_CREDENTIAL = select(*_AGENT_COLUMNS, AGENTS.c.credential_hash).where(
    AGENTS.c.credential_hash == bindparam("digest")
)
_BY_PENDING = select(*_AGENT_COLUMNS, AGENTS.c.pending_credential_hash).where(
    AGENTS.c.pending_credential_hash == bindparam("digest")
)
_TOKEN = select(
    TOKENS.c.id,
    TOKENS.c.kind,
    TOKENS.c.name,
    TOKENS.c.token_hash,
    TOKENS.c.revoked,
    TOKENS.c.expires_at,
).where(TOKENS.c.token_hash == bindparam("digest"))
_HAND_OVER = (
    update(AGENTS)
    .where(AGENTS.c.id == bindparam("b_id"), AGENTS.c.rotate_requested_at.is_not(None))
    .values(pending_credential_hash=bindparam("pending"))
)
_PROMOTE = (
    update(AGENTS)
    .where(
        AGENTS.c.id == bindparam("b_id"),
        AGENTS.c.pending_credential_hash == bindparam("digest"),
        AGENTS.c.revoked_at.is_(None),
    )
    .values(
        credential_hash=AGENTS.c.pending_credential_hash,
        pending_credential_hash=None,
        rotate_requested_at=None,
    )
)


async def agent(conn: AsyncConnection, digest: str) -> AgentCredential | None:
    """The agent whose credential, or whose handed-over new credential, has this digest."""
    for stmt, pending in ((_BY_CREDENTIAL, False), (_BY_PENDING, True)):
        row = (await conn.execute(stmt, {"digest": digest})).first()
        if row is not None:
            return AgentCredential(
                id=row[0],
                name=row[1],
                group=row[2],
                digest=row[5],
                revoked_at=row[3],
                rotating=row[4] is not None,
                pending=pending,
            )
    return None


async def token(conn: AsyncConnection, digest: str) -> TokenCredential | None:
    row = (await conn.execute(_TOKEN, {"digest": digest})).first()
    if row is None:
        return None
    return TokenCredential(
        id=row[0], kind=row[1], name=row[2], digest=row[3], revoked=row[4], expires_at=row[5]
    )


async def hand_over(conn: AsyncConnection, agent_id: str, pending_digest: str) -> bool:
    """Record the digest of the credential being handed over (False: rotation not wanted)."""
    result = await conn.execute(_HAND_OVER, {"b_id": agent_id, "pending": pending_digest})
    return bool(result.rowcount)


async def promote(conn: AsyncConnection, agent_id: str, digest: str) -> bool:
    """The handed-over credential is in use: it becomes the credential, the old one dies."""
    result = await conn.execute(_PROMOTE, {"b_id": agent_id, "digest": digest})
    return bool(result.rowcount)


async def touch_token(conn: AsyncConnection, token_id: int, now: datetime) -> None:
    touch = update(TOKENS).where(TOKENS.c.id == token_id).values(last_used=now)
    await conn.execute(touch.execution_options(**TOKEN_USE))  # not a check-in's write
