"""Request-scoped dependencies: the server context and the one principal every route uses.

Each route takes one dependency that resolves the caller (`Admin` or `Agent`): both go
through `principal`, which reads the Authorization header itself (no header parameter to
validate, no nested dependencies: on the check-in path, every step counts).
"""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from uptend.server import forwarded
from uptend.server.cache import Caller
from uptend.server.services.auth import ADMIN, AGENT, Principal, identify
from uptend.server.services.context import Context


async def context(request: Request) -> Context:  # async: FastAPI runs a `def` in a thread
    ctx: Context = request.app.state.ctx
    return ctx


Ctx = Annotated[Context, Depends(context)]


def source_of(request: Request) -> str:
    """The address a request came from: the peer, not a header a client could forge.

    Behind a reverse proxy every request comes from the proxy (rate limits then apply to
    all callers behind it together; see the README), unless it is a `--trusted-proxy`: its
    X-Forwarded-For is believed (`uptend.server.forwarded`).
    """
    return forwarded.source_of(request, request.app.state.ctx.settings)


async def principal(request: Request, role: str) -> Principal:
    """Who calls, as `role`: AuthError or RateLimitedError if not allowed."""
    return await identify(
        request.app.state.ctx, request.headers.get("authorization"), source_of(request), role
    )


async def admin(request: Request) -> str:
    return (await principal(request, ADMIN)).caller.actor


@dataclass(frozen=True, slots=True)
class AgentCall:
    ctx: Context
    agent: Caller
    generation: int  # read for this request


async def agent(request: Request) -> AgentCall:
    who = await principal(request, AGENT)
    return AgentCall(request.app.state.ctx, who.caller, who.generation)


Admin = Annotated[str, Depends(admin)]
Agent = Annotated[AgentCall, Depends(agent)]
