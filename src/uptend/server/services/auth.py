"""Who is calling: an admin token or an agent credential, checked against stored digests.

One path for every route (`identify`): read the generation, then find the credential's
digest in memory (kept under that generation, so a change such as a revocation, which bumps
it, drops every remembered credential) or, on a miss, in the database.
"""

from dataclasses import dataclass

from uptend.errors import AuthError
from uptend.server import tokens
from uptend.server.cache import Caller
from uptend.server.services.context import Context
from uptend.server.storage import hotpath
from uptend.server.storage.db import AsyncConnection


@dataclass(frozen=True, slots=True)
class Principal:
    generation: int  # read at the start of this request
    caller: Caller | None  # None: a well-formed bearer header, but no such credential


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError(
            "missing credential", hint="pass --token or set UPTEND_TOKEN to the admin token"
        )
    return token.strip()


async def _lookup(conn: AsyncConnection, token: str, wanted: str) -> Caller | None:
    if token.startswith(tokens.AGENT_PREFIX):
        agent = await hotpath.agent_by_credential(conn, wanted)
        if agent is not None and tokens.same_digest(agent[3], wanted):
            return Caller(actor=f"agent:{agent[1]}", agent_id=agent[0], group=agent[2])
    elif token.startswith(tokens.ADMIN_PREFIX):
        admin = await hotpath.admin_by_token(conn, wanted)
        if admin is not None and tokens.same_digest(admin[1], wanted):
            return Caller(actor=f"admin#{admin[0]}")
    return None


async def identify(ctx: Context, authorization: str | None) -> Principal:
    token = _bearer(authorization)
    wanted = tokens.digest(token)
    remembered = ctx.memory.credentials
    generation = await ctx.generation.current()
    caller = remembered.get(generation, wanted)
    if caller is None:
        async with ctx.db.read() as conn:
            caller = await _lookup(conn, token, wanted)
        if caller is not None:
            remembered.put(generation, wanted, caller)
    return Principal(generation, caller)


def require_admin(principal: Principal) -> str:
    """Return the actor name for audit rows, or raise AuthError."""
    caller = principal.caller
    if caller is None or caller.agent_id is not None:
        raise AuthError(
            "the admin token is not valid", hint="use the admin_token from `uptend server init`"
        )
    return caller.actor


def require_agent(principal: Principal) -> Caller:
    """The agent a credential belongs to: an agent can only ever act as itself."""
    caller = principal.caller
    if caller is None or caller.agent_id is None:
        raise AuthError(
            "the agent credential is not valid",
            hint="re-enroll this agent with `uptend agent enroll`",
        )
    return caller
