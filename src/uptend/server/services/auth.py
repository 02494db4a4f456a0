"""Who is calling: an admin token or an agent credential, checked against stored digests.

One path for every route (`identify`): read the counters, then find the credential's digest
in memory (kept under the credentials counter, which only a change to credentials bumps: a
revocation, a removal, a rotation; a publish or a group change leaves them remembered) or, on
a miss, in the database.

Refusals say why (unknown, revoked, expired, wrong kind) and are counted and rate-limited
per source address and per token id (`uptend.server.ratelimit`): a caller over its limit is
answered 429 with Retry-After before any database read. A credential already in memory is
never slowed down by the limiter, so agents sharing an address with a failing one keep
checking in.

A credential rotation (`uptend agent rotate-credential`) is finished here: the first request
made with the handed-over credential makes it the agent's one (the old one dies) and bumps
the credentials counter, so every server process sharing the database forgets the old one.
"""

import time
from dataclasses import dataclass
from typing import NoReturn

from uptend.errors import AuthError, RateLimitedError
from uptend.protocol import Directives
from uptend.server import tokens
from uptend.server.cache import Caller
from uptend.server.services.context import Context, utcnow
from uptend.server.storage import credentials, generation

ADMIN, AGENT = "admin", "agent"
_ADMIN_HINT = "use an admin token: the one `uptend server init` printed, or `uptend token create`"
_AGENT_HINT = "enroll this agent again with `uptend agent enroll` and a new enrollment token"
_EXPIRED_HINT = (
    "create a new one with `uptend token create --role admin` (with another admin token, or "
    "on the server host with `--data-dir DIR`)"
)


@dataclass(frozen=True, slots=True)
class Principal:
    generation: int  # read at the start of this request
    caller: Caller


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a credential is refused: counted by `reason`, limited per `key` (a token id)."""

    reason: str  # missing | unknown | wrong_kind | revoked | expired | used_up
    message: str
    hint: str
    key: str | None = None  # token:<id> or agent:<id> when the credential is a known one


def check_limits(ctx: Context, source: str, digest: str | None) -> None:
    """Raise RateLimitedError if `source` (or the known token `digest` is) failed too often."""
    guard, now = ctx.guard, time.monotonic()
    wait = guard.by_address.retry_after_s(source, now)
    key = guard.refused.get(digest) if digest is not None else None
    if key is not None:
        wait = max(wait, guard.by_token.retry_after_s(key, now))
    if wait:
        guard.limited += 1
        raise RateLimitedError(
            f"too many failed authentications from {source}"
            + (f" or with {key.replace(':', ' ')}" if key else ""),
            hint=f"retry in {wait} s with a valid credential",
            retry_after_s=wait,
        )


def refuse(ctx: Context, source: str, digest: str | None, refusal: Refusal) -> NoReturn:
    """Count a failed authentication against `source` and the token, then raise it."""
    check_limits(ctx, source, digest)  # a refused credential over its limit: 429, not 401
    guard, now = ctx.guard, time.monotonic()
    guard.failed(refusal.reason)
    guard.by_address.spend(source, now)
    if refusal.key is not None:
        guard.by_token.spend(refusal.key, now)
        if digest is not None:
            guard.refused.put(digest, refusal.key)
    raise AuthError(refusal.message, hint=refusal.hint)


def _bearer(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def _lookup(ctx: Context, token: str, digest: str, role: str) -> Caller | Refusal:
    async with ctx.db.read() as conn:
        if token.startswith(tokens.AGENT_PREFIX):
            agent = await credentials.agent(conn, digest)
            found: credentials.AgentCredential | credentials.TokenCredential | None = agent
        else:
            found = await credentials.token(conn, digest)
    if found is None or not tokens.same_digest(found.digest, digest):
        return _refusal(role)
    if isinstance(found, credentials.TokenCredential):
        key = f"token:{found.id}"
        label = f"{found.kind} token #{found.id}" + (f" ({found.name})" if found.name else "")
        if found.revoked:
            return Refusal("revoked", f"{label} was revoked", _ADMIN_HINT, key)
        if found.kind != "admin":
            return _refusal(role, "wrong_kind")
        return Caller(actor=f"admin#{found.id}", token_id=found.id, expires_at=found.expires_at)
    key = f"agent:{found.id}"
    if found.revoked_at is not None:
        when = found.revoked_at.isoformat(timespec="seconds")
        return Refusal("revoked", f"agent {found.name} was revoked at {when}", _AGENT_HINT, key)
    if found.pending:  # the handed-over credential, first used: it replaces the old one
        async with ctx.db.write() as conn:
            if await credentials.promote(conn, found.id, digest):
                await generation.bump_credentials(conn)
    return Caller(
        actor=f"agent:{found.name}", agent_id=found.id, group=found.group, rotating=found.rotating
    )


def _refusal(role: str, reason: str = "unknown") -> Refusal:
    if reason == "missing":
        hint = "pass --token or set UPTEND_TOKEN to an admin token" if role == ADMIN else ""
        return Refusal(reason, "missing credential", hint or _AGENT_HINT)
    if role == ADMIN:
        return Refusal(reason, "the admin token is not valid", _ADMIN_HINT)
    return Refusal(reason, "the agent credential is not valid", _AGENT_HINT)


def _check(caller: Caller, role: str) -> Refusal | None:
    """Whether a known caller may act in `role` now (an admin token may have expired)."""
    if (role == ADMIN) is (caller.agent_id is not None):
        return _refusal(role, "wrong_kind")
    if caller.expires_at is not None and caller.expires_at <= utcnow():
        when = caller.expires_at.isoformat(timespec="seconds")
        message = f"admin token #{caller.token_id} expired at {when}"
        return Refusal("expired", message, _EXPIRED_HINT, f"token:{caller.token_id}")
    return None


async def identify(ctx: Context, authorization: str | None, source: str, role: str) -> Principal:
    """The caller of one request in `role` (ADMIN or AGENT), or AuthError/RateLimitedError."""
    token = _bearer(authorization)
    if token is None:
        refuse(ctx, source, None, _refusal(role, "missing"))
    wanted = tokens.digest(token)
    remembered = ctx.memory.credentials
    current = await ctx.generation.current()
    caller = remembered.get(current.credentials, wanted)
    if caller is None:
        check_limits(ctx, source, wanted)  # before the database: a flood costs no reads
        ctx.guard.lookups += 1
        found = await _lookup(ctx, token, wanted, role)
        if isinstance(found, Refusal):
            refuse(ctx, source, wanted, found)
        caller = found
        remembered.put(current.credentials, wanted, caller)
    wrong = _check(caller, role)
    if wrong is not None:
        refuse(ctx, source, wanted, wrong)
    if caller.token_id is not None and ctx.guard.touch_due(caller.token_id, time.monotonic()):
        async with ctx.db.write() as conn:  # `token list` shows when an admin token last worked
            await credentials.touch_token(conn, caller.token_id, utcnow())
    return Principal(current.generation, caller)


async def hand_over(ctx: Context, caller: Caller, answer: Directives | bytes) -> Directives:
    """Add a new credential to a rotating agent's check-in answer (a new one each time).

    Only digests are stored, so a credential lost on the way (the agent killed before it
    stored it) cannot be sent again: the next check-in, made with the old credential, which
    stays valid until the new one is used, gets another.
    """
    assert caller.agent_id is not None
    credential = tokens.new_secret(tokens.AGENT_PREFIX)
    async with ctx.db.write() as conn:
        wanted = await credentials.hand_over(conn, caller.agent_id, tokens.digest(credential))
    directives = Directives.model_validate_json(answer) if isinstance(answer, bytes) else answer
    return directives.model_copy(update={"credential": credential}) if wanted else directives
