"""Enrollment: an enrollment token traded for an agent credential and the TUF root.

The token must be live (not revoked, not expired, not used up: each refusal says which, and
counts as a failed authentication, rate-limited like any other); a token bound to a group
enrolls into that group. Enrollments are rate-limited per source address too. A name cannot
take the form of an agent id, so a name and an id never designate two different agents.
"""

import re
import time
import uuid

from uptend.errors import ConfigError, NotFoundError, RateLimitedError
from uptend.protocol import EnrollRequest, EnrollResponse
from uptend.protocol.labels import parse_labels
from uptend.protocol.names import check_name
from uptend.server import tokens
from uptend.server.services import auth
from uptend.server.services.context import Context, utcnow
from uptend.server.services.tokens import state_of
from uptend.server.settings import ENROLLS_ENV
from uptend.server.storage import agents as rows
from uptend.server.storage import audit
from uptend.server.storage import groups as group_rows
from uptend.server.storage import labels as label_rows
from uptend.server.storage import tokens as token_rows
from uptend.server.storage.tables import AgentRow, TokenRow

_ID_LIKE = re.compile(r"[0-9a-f]{32}", re.IGNORECASE)  # uuid4().hex: what agent ids look like
_HINT = "ask the operator for an enrollment token: `uptend token create --role enroll`"


def check_agent_name(raw: str) -> str:
    name = raw.strip()
    if not name or len(name) > 128:
        raise ConfigError("agent name must be 1-128 characters", hint="pass --name")
    if _ID_LIKE.fullmatch(name):
        raise ConfigError(
            f"agent name {name!r} has the form of an agent id (32 hex digits)",
            hint="pass another --name: ids and names must never be mistaken for each other",
        )
    return name


def _limit(ctx: Context, source: str) -> None:
    guard, now = ctx.guard, time.monotonic()
    wait = guard.enrollments.retry_after_s(source, now)
    if wait:
        guard.enroll_limited += 1
        raise RateLimitedError(
            f"too many enrollments from {source}",
            hint=f"retry in {wait} s (the server allows {ENROLLS_ENV} per minute per address)",
            retry_after_s=wait,
        )
    guard.enrollments.spend(source, now)


def _refusal(token: TokenRow | None) -> auth.Refusal | None:
    if token is None or token.kind != "enroll":
        reason = "unknown" if token is None else "wrong_kind"
        return auth.Refusal(reason, "the enrollment token is not valid", _HINT)
    label, key = f"enrollment token #{token.id}", f"token:{token.id}"
    state = state_of(token, utcnow())
    if state == "revoked":
        return auth.Refusal("revoked", f"{label} was revoked", _HINT, key)
    if state == "expired":
        assert token.expires_at is not None
        when = token.expires_at.isoformat(timespec="seconds")
        return auth.Refusal("expired", f"{label} expired at {when}", _HINT, key)
    if state == "used_up":
        message = f"{label} is used up ({token.uses} of {token.max_uses} enrollments)"
        return auth.Refusal("used_up", message, _HINT, key)
    return None


async def enroll(
    ctx: Context, request: EnrollRequest, metadata_url: str, targets_url: str, source: str
) -> EnrollResponse:
    """`metadata_url` and `targets_url`: what the agent is told (`server.forwarded`)."""
    _limit(ctx, source)
    name = check_agent_name(request.name)
    check_name("group", request.group)
    wanted = tokens.digest(request.token)
    auth.check_limits(ctx, source, wanted)
    credential = tokens.new_secret(tokens.AGENT_PREFIX)
    async with ctx.db.transaction() as tx:
        token = await token_rows.by_digest(tx, wanted)
        if token is not None and not tokens.same_digest(token.token_hash, wanted):
            token = None
        refusal = _refusal(token)
        if refusal is not None:
            auth.refuse(ctx, source, wanted, refusal)
        assert token is not None
        group_name = token.group or request.group
        if token.group is not None and request.group not in ("default", token.group):
            raise ConfigError(
                f"enrollment token #{token.id} enrolls into group {token.group}, "
                f"not {request.group}",
                hint=f"leave out --group, or pass --group {token.group}",
            )
        group = await group_rows.get(tx, group_name)
        if group is None:
            raise NotFoundError(
                f"group {group_name} does not exist",
                hint=f"create it with `uptend group set {group_name} --app APP`",
            )
        now = utcnow()
        if not await token_rows.use(tx, token.id, now):  # the last use went to another
            message = f"enrollment token #{token.id} is used up"
            auth.refuse(ctx, source, wanted, auth.Refusal("used_up", message, _HINT))
        agent = AgentRow(
            id=uuid.uuid4().hex,
            name=name,
            group=group.name,
            credential_hash=tokens.digest(credential),
            enrolled_at=now,
        )
        await rows.add(tx, agent)
        await label_rows.change(tx, agent.id, parse_labels(request.labels))
        audit.record(tx, now, f"token#{token.id}", "agent.enroll", f"{name} into {group.name}")
    return EnrollResponse(
        agent_id=agent.id,
        credential=credential,
        root=ctx.repo.initial_root().decode(),
        metadata_url=metadata_url,
        targets_url=targets_url,
        poll_interval_s=group.poll_interval_s,
    )
