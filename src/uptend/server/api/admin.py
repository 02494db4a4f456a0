"""The admin API: releases, groups, the fleet. Every route needs the admin token."""

import secrets
from typing import Annotated

import anyio
from fastapi import APIRouter, Path, Query, Request

from uptend.protocol import AgentDetail, AgentPage, FleetSummary, Group, GroupSet, Release
from uptend.protocol.limits import MAX_AGENT_NAME, MAX_NAME, MAX_VERSION
from uptend.protocol.targets import ArchiveFormat
from uptend.server.api.deps import Admin, Ctx
from uptend.server.errors import responses
from uptend.server.services import fleet, groups, releases

router = APIRouter(prefix="/api/v1", tags=["admin"])

# Query and path strings are bounded here; the services check their form and say how to fix it.
NameQ = Annotated[str, Query(max_length=MAX_NAME)]
_DENIED = {401: "the admin token is missing or not valid"}
_INVALID = {422: "a parameter or the body is not valid (the message says which)"}
_TOO_LARGE = {
    400: "the body is not text FastAPI can read (e.g. not UTF-8)",
    413: "the body is over the server's limit (UPTEND_MAX_BODY_BYTES)",
}


@router.post(
    "/releases",
    status_code=201,
    responses=responses(
        {
            **_DENIED,
            **_INVALID,
            409: "a release of this app with an equal version (under PEP 440) exists",
            413: "the archive is over the server's limit (UPTEND_MAX_UPLOAD_BYTES)",
        }
    ),
)
async def publish(
    ctx: Ctx,
    actor: Admin,
    request: Request,
    app: NameQ,
    version: Annotated[str, Query(max_length=MAX_VERSION)],
    channel: NameQ = "stable",
    fmt: Annotated[ArchiveFormat, Query(alias="format")] = ArchiveFormat.TAR_GZ,
) -> Release:
    """Publish a release: the body is the .tar.gz or .zip archive, streamed.

    The version is stored and signed in its PEP 440 normal form (`1.1-0` becomes
    `1.1.post0`); one equal to a published version of the app, however spelled, is a 409.
    """
    version = releases.check_request(app, version, channel)
    await releases.refuse_duplicate(ctx, app, version)
    ctx.settings.upload_dir.mkdir(exist_ok=True)
    upload = ctx.settings.upload_dir / f"{secrets.token_hex(8)}{releases.UPLOAD_SUFFIX}"
    try:  # bodylimit caps the stream at the server's upload limit
        async with await anyio.open_file(upload, "wb") as f:
            async for chunk in request.stream():
                await f.write(chunk)
    except BaseException:
        upload.unlink(missing_ok=True)
        raise
    return await releases.publish(ctx, actor, app, version, channel, fmt, upload)


@router.get("/releases", responses=responses({**_DENIED, **_INVALID}))
async def list_releases(
    ctx: Ctx, _: Admin, app: Annotated[str | None, Query(max_length=MAX_NAME)] = None
) -> list[Release]:
    """Every release, oldest first per app."""
    return await releases.listing(ctx, app)


@router.put("/groups/{name}", responses=responses({**_DENIED, **_INVALID, **_TOO_LARGE}))
async def set_group(
    ctx: Ctx, actor: Admin, name: Annotated[str, Path(max_length=MAX_NAME)], body: GroupSet
) -> Group:
    """Create or change a group; with `app`, assign that app on `channel`."""
    return await groups.set_group(ctx, actor, name, body)


@router.get("/groups", responses=responses(_DENIED))
async def list_groups(ctx: Ctx, _: Admin) -> list[Group]:
    """Every group with its apps and policy."""
    return await groups.listing(ctx)


@router.get("/agents", responses=responses({**_DENIED, **_INVALID}))
async def list_agents(
    ctx: Ctx,
    _: Admin,
    outdated: bool = False,
    reason: Annotated[str | None, Query(max_length=MAX_NAME)] = None,
    group: Annotated[str | None, Query(max_length=MAX_NAME)] = None,
    app: Annotated[str | None, Query(max_length=MAX_NAME)] = None,
    limit: int = fleet.DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> AgentPage:
    """One page of the fleet in name order, filtered and counted in the database.

    Each app says why it is where it is (a typed reason); pass `next_cursor` back as `cursor`.
    """
    return await fleet.page(
        ctx, outdated=outdated, reason=reason, group=group, app=app, limit=limit, cursor=cursor
    )


@router.get("/fleet/summary", responses=responses(_DENIED))
async def fleet_summary(ctx: Ctx, _: Admin) -> FleetSummary:
    """Per app: the version distribution, the share on the desired version, agents per reason."""
    return await fleet.summary(ctx)


_NOT_FOUND = {404: "no agent has this id or name"}


@router.get(
    "/agents/{key:path}",  # a name may hold a "/"
    responses=responses({**_DENIED, **_INVALID, **_NOT_FOUND}),
)
async def show_agent(
    ctx: Ctx, _: Admin, key: Annotated[str, Path(max_length=MAX_AGENT_NAME)]
) -> AgentDetail:
    """One agent (by id or name) with its latest update reports."""
    return await fleet.show(ctx, key)


@router.post(
    "/agents/{key}/apps/{app}/retry",
    status_code=204,
    responses=responses({**_DENIED, **_INVALID, 404: "no such agent, or it does not run the app"}),
)
async def retry(
    ctx: Ctx,
    actor: Admin,
    key: Annotated[str, Path(max_length=MAX_AGENT_NAME)],
    app: Annotated[str, Path(max_length=MAX_NAME)],
) -> None:
    """Let the agent try again a version that failed its health check there."""
    await fleet.retry(ctx, actor, key, app)
