"""The admin API: releases, groups, the fleet. Every route needs the admin token."""

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
from uptend.protocol.targets import ArchiveFormat
from uptend.server.api.deps import Admin, Ctx
from uptend.server.services import fleet, groups, releases, schedule
from uptend.server.settings import MAX_UPLOAD_BYTES

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
    critical: Annotated[bool, Query()] = False,
) -> Release:
    """Publish a release: the body is the .tar.gz or .zip archive, streamed."""
    releases.check_request(app, version, channel)
    await releases.refuse_duplicate(ctx, app, version)
    ctx.settings.upload_dir.mkdir(exist_ok=True)
    upload = ctx.settings.upload_dir / f"{secrets.token_hex(8)}.upload"
    size = 0
    try:
        async with await anyio.open_file(upload, "wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise ConfigError(
                        f"release archive exceeds {MAX_UPLOAD_BYTES} bytes",
                        hint="ship large data outside the release",
                    )
                await f.write(chunk)
    except BaseException:
        upload.unlink(missing_ok=True)
        raise
    return await releases.publish(ctx, actor, app, version, channel, fmt, upload, critical=critical)


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


@router.get("/agents/{key:path}")  # a name may hold a "/"
async def show_agent(ctx: Ctx, _: Admin, key: str) -> AgentDetail:
    """One agent (by id or name) with its latest update reports."""
    return await fleet.show(ctx, key)


@router.post("/agents/{key}/apps/{app}/retry", status_code=204)
async def retry(ctx: Ctx, actor: Admin, key: str, app: str) -> None:
    """Let the agent try again a version that failed its health check there."""
    await fleet.retry(ctx, actor, key, app)
