"""The admin API of operator commands, and the hook that wakes long-polls after a change."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request

from uptend.protocol.commands import CommandSend, CommandState, CommandView
from uptend.protocol.limits import MAX_AGENT_NAME
from uptend.server.api.deps import Admin, Ctx
from uptend.server.errors import responses
from uptend.server.services import commands as service
from uptend.server.services.context import Context

router = APIRouter(prefix="/api/v1", tags=["admin"])
_DENIED = {
    401: "the admin token is missing or not valid",
    429: "too many failed authentications from this address or token (Retry-After)",
}


async def changed(request: Request) -> AsyncIterator[None]:
    """After an admin change succeeded: held long-polls hear of a new generation at once."""
    yield
    if request.method != "GET":
        ctx: Context = request.app.state.ctx
        await ctx.hub.changed()


@router.post(
    "/commands",
    status_code=201,
    responses=responses(
        {
            **_DENIED,
            400: "the body is not text FastAPI can read (e.g. not UTF-8)",
            404: "no such agent, or the group has none",
            413: "the body is over the server's limit (UPTEND_MAX_BODY_BYTES)",
            422: "invalid",
        }
    ),
)
async def send(ctx: Ctx, actor: Admin, body: CommandSend) -> list[CommandView]:
    """Queue a command for one agent or every agent of a group.

    Delivered at once to a long-polling agent, else at its next check-in, until acknowledged.
    """
    return await service.send(ctx, actor, body)


@router.get("/commands", responses=responses({**_DENIED, 404: "no such agent", 422: "invalid"}))
async def listing(
    ctx: Ctx,
    _: Admin,
    agent: Annotated[str | None, Query(max_length=MAX_AGENT_NAME)] = None,
    by_id: bool = False,
    state: CommandState | None = None,
    limit: Annotated[int, Query(ge=1, le=service.LIST_LIMIT)] = 100,
) -> list[CommandView]:
    """Commands newest first, by agent and state (`expired`: past expiry, never carried out)."""
    return await service.listing(ctx, agent=agent, by_id=by_id, state=state, limit=limit)
