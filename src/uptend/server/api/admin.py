"""The admin API: releases, groups, the fleet, credentials. Every route needs an admin token."""

import secrets
from typing import Annotated

import anyio
from fastapi import APIRouter, Path, Query, Request

from uptend.errors import ConfigError
from uptend.protocol import (
    Agent,
    AgentDetail,
    AgentPage,
    FleetSummary,
    FreezeSet,
    FreezeView,
    Group,
    GroupSet,
    LabelChange,
    Release,
)
from uptend.protocol.commands import CommandView
from uptend.protocol.credentials import AgentRef, TokenCreate, TokenCreated, TokenInfo
from uptend.protocol.labels import MAX_LABELS
from uptend.protocol.limits import MAX_AGENT_NAME, MAX_NAME, MAX_SENT_MANIFEST, MAX_VERSION
from uptend.protocol.targets import ArchiveFormat
from uptend.server.api.deps import Admin, Ctx
from uptend.server.errors import responses
from uptend.server.services import agents, fleet, groups, labels, releases, schedule, tokens
from uptend.server.tuf_repo.signed import MAX_SIGNED_BYTES

router = APIRouter(prefix="/api/v1", tags=["admin"])

# Query and path strings are bounded here; the services check their form and say how to fix it.
NameQ = Annotated[str, Query(max_length=MAX_NAME)]
_DENIED = {
    401: "the admin token is missing or not valid",
    429: "too many failed authentications from this address or token (Retry-After)",
}
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
    signed: Annotated[int | None, Query(ge=2, le=MAX_SIGNED_BYTES)] = None,
    critical: Annotated[bool, Query()] = False,
    floor: Annotated[bool, Query()] = False,
    # ASCII and short: percent-encoded it stays well inside the HTTP parser's request-line limit
    manifest: Annotated[
        str | None, Query(max_length=MAX_SENT_MANIFEST, pattern=r"^[\t\n\r -~]*$")
    ] = None,
) -> Release:
    """Publish a release: the body is the .tar.gz or .zip archive, streamed.

    With `signed=N`, the body's first N bytes are the release's TUF roles signed on the
    publisher's workstation (`uptend release sign`), and the archive follows. A `.deb`
    (`format=deb`) comes with its `manifest` (uptend.toml text), signed with it. The version is
    stored and signed in its PEP 440 normal form (`1.1-0` becomes `1.1.post0`); one equal to
    a published version of the app, however spelled, is a 409. With `floor`, no lower version
    of the app is installed any more: every lower release is re-signed with the floor in its
    `custom`, so agents refuse them too (needs the releases key on the server).
    """
    version = releases.check_request(app, version, channel)
    await releases.refuse_duplicate(ctx, app, version)
    ctx.settings.upload_dir.mkdir(exist_ok=True)
    upload = ctx.settings.upload_dir / f"{secrets.token_hex(8)}{releases.UPLOAD_SUFFIX}"
    head = bytearray()
    try:  # bodylimit caps the stream at the server's upload limit
        async with await anyio.open_file(upload, "wb") as f:
            async for data in request.stream():
                take = max(0, (signed or 0) - len(head))
                head += data[:take]
                chunk = data[take:]
                await f.write(chunk)
        if len(head) < (signed or 0):
            raise ConfigError(f"the body ends inside its {signed} bytes of signed metadata")
    except BaseException:
        upload.unlink(missing_ok=True)
        raise
    roles = bytes(head) if signed else None
    return await releases.publish(
        ctx,
        actor,
        app,
        version,
        channel,
        fmt,
        upload,
        roles,
        critical=critical,
        floor=floor,
        manifest=manifest,
    )


@router.get("/releases", responses=responses({**_DENIED, **_INVALID}))
async def list_releases(
    ctx: Ctx, _: Admin, app: Annotated[str | None, Query(max_length=MAX_NAME)] = None
) -> list[Release]:
    """Every release, oldest first per app."""
    return await releases.listing(ctx, app)


@router.put(
    "/groups/{name}",
    responses=responses(
        {**_DENIED, **_INVALID, **_TOO_LARGE, 404: "no release on the channel matches the pin"}
    ),
)
async def set_group(
    ctx: Ctx, actor: Admin, name: Annotated[str, Path(max_length=MAX_NAME)], body: GroupSet
) -> Group:
    """Create or change a group; with `app`, assign that app on `channel` (and pin it)."""
    return await groups.set_group(ctx, actor, name, body)


@router.get("/groups", responses=responses(_DENIED))
async def list_groups(ctx: Ctx, _: Admin) -> list[Group]:
    """Every group with its apps and policy."""
    return await groups.listing(ctx)


@router.put("/freeze", responses=responses({**_DENIED, **_INVALID, **_TOO_LARGE}))
async def set_freeze(ctx: Ctx, actor: Admin, body: FreezeSet) -> FreezeView:
    """Stop all installs fleet-wide from `start` (default now) until `until`."""
    return await schedule.set_freeze(ctx, actor, body)


@router.delete("/freeze", status_code=204, responses=responses(_DENIED))
async def clear_freeze(ctx: Ctx, actor: Admin) -> None:
    """End the freeze (nothing to do when none is set)."""
    await schedule.clear_freeze(ctx, actor)


@router.get("/freeze", responses=responses(_DENIED))
async def show_freeze(ctx: Ctx, _: Admin) -> FreezeView | None:
    """The freeze, if one is set (null otherwise), and whether it is in force now."""
    return await schedule.show_freeze(ctx)


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
    label: Annotated[list[str] | None, Query(max_length=MAX_LABELS)] = None,
) -> AgentPage:
    """One page of the fleet in name order, filtered and counted in the database.

    Each app says why it is where it is (a typed reason); pass `next_cursor` back as `cursor`.
    `label=KEY=VALUE` (repeatable) keeps the agents that have every one of those labels.
    """
    return await fleet.page(
        ctx,
        outdated=outdated,
        reason=reason,
        group=group,
        app=app,
        limit=limit,
        cursor=cursor,
        labels=label,
    )


@router.get("/fleet/summary", responses=responses(_DENIED))
async def fleet_summary(ctx: Ctx, _: Admin) -> FleetSummary:
    """Per app: the version distribution, the share on the desired version, agents per reason."""
    return await fleet.summary(ctx)


ById = Annotated[bool, Query(description="KEY is the agent's id, not its name")]
AgentKey = Annotated[str, Path(max_length=MAX_AGENT_NAME)]
_NOT_FOUND = {404: "no agent has this name (or id, with by_id)"}
_ON_AGENT = responses({**_DENIED, **_INVALID, **_NOT_FOUND})


@router.post("/agents/{key:path}/revoke", responses=_ON_AGENT)  # a name may hold a "/"
async def revoke_agent(ctx: Ctx, actor: Admin, key: AgentKey, by_id: ById = False) -> AgentRef:
    """Refuse the agent's credential from now on; it stays in the fleet view, as revoked."""
    return await agents.revoke(ctx, actor, key, by_id=by_id)


@router.post(
    "/agents/{key:path}/labels",
    responses=responses({**_DENIED, **_INVALID, **_NOT_FOUND, **_TOO_LARGE}),
)
async def label_agent(
    ctx: Ctx, actor: Admin, key: AgentKey, body: LabelChange, by_id: ById = False
) -> Agent:
    """Set (`KEY=VALUE`) or remove (`KEY-`) labels of the agent; the agent as the view shows it."""
    return await labels.change(ctx, actor, key, body.labels, by_id=by_id)


@router.post("/agents/{key:path}/rotate-credential", responses=_ON_AGENT)
async def rotate_agent(ctx: Ctx, actor: Admin, key: AgentKey, by_id: ById = False) -> AgentRef:
    """Hand the agent a new credential at its next check-in (the old one works until then)."""
    return await agents.rotate(ctx, actor, key, by_id=by_id)


@router.post(
    "/agents/{key}/apps/{app}/retry",
    responses=responses({**_DENIED, **_INVALID, 404: "no such agent, or it does not run the app"}),
)
async def retry(
    ctx: Ctx,
    actor: Admin,
    key: AgentKey,
    app: Annotated[str, Path(max_length=MAX_NAME)],
    by_id: ById = False,
) -> CommandView:
    """Let the agent try again a version that failed there: a `retry` command, run once."""
    return await fleet.retry(ctx, actor, key, app, by_id=by_id)


@router.get("/agents/{key:path}", responses=_ON_AGENT)
async def show_agent(ctx: Ctx, _: Admin, key: AgentKey, by_id: ById = False) -> AgentDetail:
    """One agent (by name, or by id with `by_id`) with its latest update reports."""
    return await fleet.show(ctx, key, by_id=by_id)


@router.delete("/agents/{key:path}", responses=_ON_AGENT)
async def remove_agent(ctx: Ctx, actor: Admin, key: AgentKey, by_id: ById = False) -> AgentRef:
    """Forget the agent: gone from the fleet view, its credential refused; audited."""
    return await agents.remove(ctx, actor, key, by_id=by_id)


@router.post("/tokens", status_code=201, responses=responses({**_DENIED, **_INVALID, **_TOO_LARGE}))
async def create_token(ctx: Ctx, actor: Admin, body: TokenCreate) -> TokenCreated:
    """Create an admin or enrollment token; the answer holds its secret, shown only this once."""
    return await tokens.create(ctx, actor, body)


@router.get("/tokens", responses=responses(_DENIED))
async def list_tokens(ctx: Ctx, _: Admin) -> list[TokenInfo]:
    """Every token without its secret: role, name, group, uses, expiry, state."""
    return await tokens.listing(ctx)


@router.post(
    "/tokens/{token_id}/revoke",
    responses=responses(
        {**_DENIED, **_INVALID, 404: "no token has this id", 409: "the last live admin token"}
    ),
)
async def revoke_token(ctx: Ctx, actor: Admin, token_id: int) -> TokenInfo:
    """Revoke a token for good (refused at the next request on every server process)."""
    return await tokens.revoke(ctx, actor, token_id)
