"""Request-scoped dependencies: the server context and the admin identity."""

from typing import Annotated

from fastapi import Depends, Header, Request

from uptend.server.services.auth import require_admin
from uptend.server.services.context import Context


def context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


Ctx = Annotated[Context, Depends(context)]


async def admin(ctx: Ctx, authorization: Annotated[str | None, Header()] = None) -> str:
    return await require_admin(ctx, authorization)


Admin = Annotated[str, Depends(admin)]
