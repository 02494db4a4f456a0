"""Request-scoped dependencies: the server context and the one principal every route uses."""

from typing import Annotated

from fastapi import Depends, Header, Request

from uptend.server.cache import Caller
from uptend.server.services.auth import Principal, identify, require_admin, require_agent
from uptend.server.services.context import Context


async def context(request: Request) -> Context:  # async: FastAPI runs a `def` in a thread
    ctx: Context = request.app.state.ctx
    return ctx


Ctx = Annotated[Context, Depends(context)]


async def principal(ctx: Ctx, authorization: Annotated[str | None, Header()] = None) -> Principal:
    return await identify(ctx, authorization)


Who = Annotated[Principal, Depends(principal)]


async def admin(who: Who) -> str:
    return require_admin(who)


async def agent(who: Who) -> tuple[Caller, int]:
    return require_agent(who), who.generation


Admin = Annotated[str, Depends(admin)]
Agent = Annotated[tuple[Caller, int], Depends(agent)]  # the agent and the generation read
