"""Admin and enrollment tokens: create (the secret shown once), list, revoke.

`server init` makes the first of each through `add`; the rest come from `uptend token
create`. Revoking bumps the credentials counter, so every server process sharing the database
forgets a remembered admin token at its next request.
"""

from datetime import datetime, timedelta

from uptend.errors import ConfigError, ConflictError, NotFoundError
from uptend.protocol.credentials import TokenCreate, TokenCreated, TokenInfo, TokenRole, TokenState
from uptend.protocol.names import check_name
from uptend.server import tokens
from uptend.server.services.context import Context, utcnow
from uptend.server.storage import audit, generation
from uptend.server.storage import groups as group_rows
from uptend.server.storage import tokens as rows
from uptend.server.storage.db import Tx
from uptend.server.storage.tables import TokenRow


def state_of(row: TokenRow, now: datetime) -> TokenState:
    if row.revoked:
        return TokenState.REVOKED
    if row.expires_at is not None and row.expires_at <= now:
        return TokenState.EXPIRED
    if row.max_uses is not None and row.uses >= row.max_uses:
        return TokenState.USED_UP
    return TokenState.LIVE


def info(row: TokenRow, now: datetime) -> TokenInfo:
    admin = row.kind == TokenRole.ADMIN
    return TokenInfo(
        id=row.id,
        role=TokenRole(row.kind),
        name=row.name,
        group=row.group,
        created_at=row.created_at,
        last_used=row.last_used,
        uses=None if admin else row.uses,
        max_uses=row.max_uses,
        expires_at=row.expires_at,
        revoked=row.revoked,
        state=state_of(row, now),
    )


async def add(tx: Tx, body: TokenCreate, root_fingerprint: str, actor: str) -> TokenCreated:
    """Make a token in the caller's transaction; its secret is in the answer and nowhere else."""
    if body.role is TokenRole.ADMIN and (body.group is not None or body.max_uses is not None):
        raise ConfigError(
            "--group and --max-uses apply to enrollment tokens only",
            hint="drop them, or create the token with --role enroll",
        )
    if body.group is not None:
        check_name("group", body.group)
        if await group_rows.get(tx, body.group) is None:
            raise NotFoundError(
                f"group {body.group} does not exist",
                hint=f"create it with `uptend group set {body.group} --app APP`",
            )
    if body.role is TokenRole.ADMIN:
        secret = tokens.new_secret(tokens.ADMIN_PREFIX)
    else:
        secret = tokens.new_enroll_token(root_fingerprint)
    now = utcnow()
    expires = now + timedelta(seconds=body.expires_in_s) if body.expires_in_s else None
    row = await rows.add(
        tx,
        body.role.value,
        tokens.digest(secret),
        now,
        name=body.name.strip(),
        group=body.group,
        expires_at=expires,
        max_uses=body.max_uses,
    )
    audit.record(tx, now, actor, "token.create", f"{body.role.value} token #{row.id}")
    return TokenCreated(token=secret, info=info(row, now))


async def create(ctx: Context, actor: str, body: TokenCreate) -> TokenCreated:
    async with ctx.db.transaction() as tx:
        return await add(tx, body, ctx.repo.root_fingerprint(), actor)


async def listing(ctx: Context) -> list[TokenInfo]:
    now = utcnow()
    async with ctx.db.transaction() as tx:
        return [info(row, now) for row in await rows.listing(tx)]


async def revoke(ctx: Context, actor: str, token_id: int) -> TokenInfo:
    """Revoke a token for good; the last working admin token cannot be revoked (lock-out)."""
    now = utcnow()
    async with ctx.db.transaction() as tx:
        row = await rows.by_id(tx, token_id)
        if row is None:
            raise NotFoundError(
                f"token #{token_id} does not exist", hint="list the tokens with `uptend token list`"
            )
        if not row.revoked:
            live = row.kind == TokenRole.ADMIN and state_of(row, now) is TokenState.LIVE
            if live and await rows.live_admins(tx, now) <= 1:
                raise ConflictError(
                    f"token #{token_id} is the last working admin token",
                    hint="create another first with `uptend token create --role admin`",
                )
            row.revoked = True
            await generation.bump_credentials(tx)  # every process forgets it at its next request
            audit.record(tx, now, actor, "token.revoke", f"{row.kind} token #{token_id}")
        return info(row, now)
