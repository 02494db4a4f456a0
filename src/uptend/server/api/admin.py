"""The admin API: releases, groups, the fleet, credentials. Every route needs an admin token."""

import secrets
from typing import Annotated

import anyio
from fastapi import APIRouter, Query, Request

from uptend.errors import ConfigError
from uptend.protocol import (
    AgentDetail,
    AgentPage,
    FleetSummary,
    FreezeSet,
    FreezeView,
    Group,
    GroupSet,
    Release,
)
from uptend.protocol.credentials import AgentRef, TokenCreate, TokenCreated, TokenInfo
from uptend.protocol.targets import ArchiveFormat
from uptend.server.api.deps import Admin, Ctx
from uptend.server.services import agents, fleet, groups, releases, schedule, tokens
from uptend.server.settings import MAX_UPLOAD_BYTES
from uptend.server.tuf_repo.signed import MAX_SIGNED_BYTES

router = APIRouter(prefix="/api/v1", tags=["admin"])


@router.post("/releases", status_code=201)
async def publish(
    ctx: Ctx,
    actor: Admin,
    request: Request,
    app: Annotated[str, Query()],
    version: Annotated[str, Query()],
    channel: Annotated[str, Query()] = "stable",
    fmt: Annotated[ArchiveFormat, Query(alias="format")] = ArchiveFormat.TAR_GZ,
    signed: Annotated[int | None, Query(ge=2, le=MAX_SIGNED_BYTES)] = None,
    critical: Annotated[bool, Query()] = False,
) -> Release:
    """Publish a release: the body is the .tar.gz or .zip archive, streamed.

    With `signed=N`, the body's first N bytes are the release's TUF roles signed on the
    publisher's workstation (`uptend release sign`), and the archive follows.
    """
    releases.check_request(app, version, channel)
    await releases.refuse_duplicate(ctx, app, version)
    ctx.settings.upload_dir.mkdir(exist_ok=True)
    upload = ctx.settings.upload_dir / f"{secrets.token_hex(8)}.upload"
    size = 0
    head = bytearray()
    try:
        async with await anyio.open_file(upload, "wb") as f:
            async for data in request.stream():
                take = max(0, (signed or 0) - len(head))
                head += data[:take]
                chunk = data[take:]
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise ConfigError(
                        f"release archive exceeds {MAX_UPLOAD_BYTES} bytes",
                        hint="ship large data outside the release",
                    )
                await f.write(chunk)
        if len(head) < (signed or 0):
            raise ConfigError(f"the body ends inside its {signed} bytes of signed metadata")
    except BaseException:
        upload.unlink(missing_ok=True)
        raise
    roles = bytes(head) if signed else None
    return await releases.publish(
        ctx, actor, app, version, channel, fmt, upload, roles, critical=critical
    )


@router.get("/releases")
async def list_releases(ctx: Ctx, _: Admin, app: str | None = None) -> list[Release]:
    """Every release, oldest first per app."""
    return await releases.listing(ctx, app)


@router.put("/groups/{name}")
async def set_group(ctx: Ctx, actor: Admin, name: str, body: GroupSet) -> Group:
    """Create or change a group; with `app`, assign that app on `channel`."""
    return await groups.set_group(ctx, actor, name, body)


@router.get("/groups")
async def list_groups(ctx: Ctx, _: Admin) -> list[Group]:
    """Every group with its apps and policy."""
    return await groups.listing(ctx)


@router.put("/freeze")
async def set_freeze(ctx: Ctx, actor: Admin, body: FreezeSet) -> FreezeView:
    """Stop all installs fleet-wide from `start` (default now) until `until`."""
    return await schedule.set_freeze(ctx, actor, body)


@router.delete("/freeze", status_code=204)
async def clear_freeze(ctx: Ctx, actor: Admin) -> None:
    """End the freeze (nothing to do when none is set)."""
    await schedule.clear_freeze(ctx, actor)


@router.get("/freeze")
async def show_freeze(ctx: Ctx, _: Admin) -> FreezeView | None:
    """The freeze, if one is set (null otherwise), and whether it is in force now."""
    return await schedule.show_freeze(ctx)


@router.get("/agents")
async def list_agents(
    ctx: Ctx,
    _: Admin,
    outdated: bool = False,
    reason: str | None = None,
    group: str | None = None,
    app: str | None = None,
    limit: int = fleet.DEFAULT_LIMIT,
    cursor: str | None = None,
) -> AgentPage:
    """One page of the fleet in name order, filtered and counted in the database.

    Each app says why it is where it is (a typed reason); pass `next_cursor` back as `cursor`.
    """
    return await fleet.page(
        ctx, outdated=outdated, reason=reason, group=group, app=app, limit=limit, cursor=cursor
    )


@router.get("/fleet/summary")
async def fleet_summary(ctx: Ctx, _: Admin) -> FleetSummary:
    """Per app: the version distribution, the share on the desired version, agents per reason."""
    return await fleet.summary(ctx)


ById = Annotated[bool, Query(description="KEY is the agent's id, not its name")]


@router.post("/agents/{key:path}/revoke")  # a name may hold a "/"
async def revoke_agent(ctx: Ctx, actor: Admin, key: str, by_id: ById = False) -> AgentRef:
    """Refuse the agent's credential from now on; it stays in the fleet view, as revoked."""
    return await agents.revoke(ctx, actor, key, by_id=by_id)


@router.post("/agents/{key:path}/rotate-credential")
async def rotate_agent(ctx: Ctx, actor: Admin, key: str, by_id: ById = False) -> AgentRef:
    """Hand the agent a new credential at its next check-in (the old one works until then)."""
    return await agents.rotate(ctx, actor, key, by_id=by_id)


@router.post("/agents/{key}/apps/{app}/retry", status_code=204)
async def retry(ctx: Ctx, actor: Admin, key: str, app: str, by_id: ById = False) -> None:
    """Let the agent try again a version that failed its health check there."""
    await fleet.retry(ctx, actor, key, app, by_id=by_id)


@router.get("/agents/{key:path}")
async def show_agent(ctx: Ctx, _: Admin, key: str, by_id: ById = False) -> AgentDetail:
    """One agent (by name, or by id with `by_id`) with its latest update reports."""
    return await fleet.show(ctx, key, by_id=by_id)


@router.delete("/agents/{key:path}")
async def remove_agent(ctx: Ctx, actor: Admin, key: str, by_id: ById = False) -> AgentRef:
    """Forget the agent: gone from the fleet view, its credential refused; audited."""
    return await agents.remove(ctx, actor, key, by_id=by_id)


@router.post("/tokens", status_code=201)
async def create_token(ctx: Ctx, actor: Admin, body: TokenCreate) -> TokenCreated:
    """Create an admin or enrollment token; the answer holds its secret, shown only this once."""
    return await tokens.create(ctx, actor, body)


@router.get("/tokens")
async def list_tokens(ctx: Ctx, _: Admin) -> list[TokenInfo]:
    """Every token without its secret: role, name, group, uses, expiry, state."""
    return await tokens.listing(ctx)


@router.post("/tokens/{token_id}/revoke")
async def revoke_token(ctx: Ctx, actor: Admin, token_id: int) -> TokenInfo:
    """Revoke a token for good (refused at the next request on every server process)."""
    return await tokens.revoke(ctx, actor, token_id)
