"""The admin API of signed remote configuration (`uptend config ...`)."""

from typing import Annotated

from fastapi import APIRouter, Path, Query

from uptend.protocol import names
from uptend.protocol.configs import ConfigDocument, ConfigRollback, ConfigSet, ConfigView
from uptend.protocol.limits import MAX_INT
from uptend.server.api.deps import Admin, Ctx
from uptend.server.errors import responses
from uptend.server.services import configs as service

router = APIRouter(prefix="/api/v1", tags=["admin"])
_DENIED = {
    401: "the admin token is missing or not valid",
    429: "too many failed authentications from this address or token (Retry-After)",
}
_WRITE = {
    **_DENIED,
    400: "the body is not text FastAPI can read (e.g. not UTF-8)",
    409: "another config version of the app was signed at the same moment: send it again",
    413: "the body is over the server's limit (UPTEND_MAX_BODY_BYTES)",
    422: "invalid, or the release keys are offline (nothing on the server can sign it)",
}
AppName = Annotated[str, Path(pattern=rf"^{names.PATTERN}$")]


@router.post(
    "/apps/{app}/config",
    status_code=201,
    responses=responses({**_WRITE, 404: "no such group"}),
)
async def set_config(ctx: Ctx, actor: Admin, app: AppName, body: ConfigSet) -> ConfigView:
    """Sign the document as the app's next config version; agents apply it at once."""
    return await service.set_config(ctx, actor, app, body.content, body.group)


@router.post(
    "/apps/{app}/config/rollback",
    status_code=201,
    responses=responses({**_WRITE, 404: "no such config version"}),
)
async def rollback(ctx: Ctx, actor: Admin, app: AppName, body: ConfigRollback) -> ConfigView:
    """A new config version with the content (and group) of version `to`."""
    return await service.rollback(ctx, actor, app, body.to)


@router.get(
    "/apps/{app}/config",
    responses=responses({**_DENIED, 404: "no such group", 422: "invalid"}),
)
async def history(
    ctx: Ctx,
    _: Admin,
    app: AppName,
    group: Annotated[str | None, Query(pattern=rf"^{names.PATTERN}$")] = None,
    limit: Annotated[int, Query(ge=1, le=service.HISTORY_LIMIT)] = 100,
) -> list[ConfigView]:
    """The app's config versions newest first (with `group`: those that apply to it)."""
    return await service.history(ctx, app, group, limit)


@router.get(
    "/apps/{app}/config/{version}",
    responses=responses({**_DENIED, 404: "no such config version", 422: "invalid"}),
)
async def get(
    ctx: Ctx, _: Admin, app: AppName, version: Annotated[int, Path(ge=1, le=MAX_INT)]
) -> ConfigDocument:
    """One config version with its content."""
    return await service.get(ctx, app, version)


@router.get(
    "/apps/{app}/config-current",
    responses=responses({**_DENIED, 404: "the app has no config", 422: "invalid"}),
)
async def newest(ctx: Ctx, _: Admin, app: AppName) -> ConfigDocument:
    """The app's newest config version with its content, whatever its group."""
    return await service.get(ctx, app, None)
