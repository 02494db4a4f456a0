"""Who is calling: an admin token or an agent credential, checked against stored digests."""

from uptend.errors import AuthError
from uptend.server import tokens
from uptend.server.services.context import Context
from uptend.server.storage import agents as agent_rows
from uptend.server.storage import tokens as token_rows
from uptend.server.storage.db import Tx
from uptend.server.storage.tables import AgentRow


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError(
            "missing credential", hint="pass --token or set UPTEND_TOKEN to the admin token"
        )
    return token.strip()


async def require_admin(ctx: Context, authorization: str | None) -> str:
    """Return the actor name for audit rows, or raise AuthError."""
    token = _bearer(authorization)
    wanted = tokens.digest(token)
    async with ctx.db.transaction() as tx:
        row = await token_rows.find(tx, "admin", wanted)
    if row is None or not tokens.same_digest(row.token_hash, wanted):
        raise AuthError(
            "the admin token is not valid", hint="use the admin_token from `uptend server init`"
        )
    return f"admin#{row.id}"


async def require_agent(tx: Tx, authorization: str | None) -> AgentRow:
    """The agent a credential belongs to: an agent can only ever act as itself."""
    token = _bearer(authorization)
    wanted = tokens.digest(token)
    row = await agent_rows.by_credential(tx, wanted)
    if row is None or not tokens.same_digest(row.credential_hash, wanted):
        raise AuthError(
            "the agent credential is not valid",
            hint="re-enroll this agent with `uptend agent enroll`",
        )
    return row
