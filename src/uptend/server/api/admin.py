"""The admin API: releases, groups, the fleet. Every route needs the admin token."""

import secrets
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request

from uptend.errors import ConfigError
from uptend.protocol import Agent, Group, GroupSet, Release
from uptend.protocol.targets import ArchiveFormat
from uptend.server.api.deps import Admin, Ctx
from uptend.server.services import fleet, groups, releases
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
    return await releases.publish(ctx, actor, app, version, channel, fmt, upload)


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


@router.get("/agents")
async def list_agents(ctx: Ctx, _: Admin, outdated: bool = False) -> list[Agent]:
    """The fleet: per agent and app, installed, desired and newest version, and state."""
    return await fleet.fleet(ctx, outdated=outdated)


@router.get("/agents/{key}")
async def show_agent(ctx: Ctx, _: Admin, key: str) -> dict[str, Any]:
    """One agent (by id or name) with its latest update reports."""
    agent, reports = await fleet.show(ctx, key)
    return {
        "agent": agent.model_dump(mode="json"),
        "reports": [
            {
                "app": r.app,
                "version": r.version,
                "outcome": r.outcome,
                "reason": r.reason,
                "log_tail": r.log_tail,
                "at": r.at.isoformat(),
            }
            for r in reports
        ],
    }


@router.post("/agents/{key}/apps/{app}/retry", status_code=204)
async def retry(ctx: Ctx, actor: Admin, key: str, app: str) -> None:
    """Let the agent try again a version that failed its health check there."""
    await fleet.retry(ctx, actor, key, app)
