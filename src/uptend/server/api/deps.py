"""Request-scoped dependencies: the server context and the one principal every route uses.

Each route takes one dependency that resolves the caller (`Admin` or `Agent`): both go
through `principal`, which reads the Authorization header itself (no header parameter to
validate, no nested dependencies: on the check-in path, every step counts).
"""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from uptend.server.cache import Caller
from uptend.server.services.auth import Principal, identify, require_admin, require_agent
from uptend.server.services.context import Context


async def context(request: Request) -> Context:  # async: FastAPI runs a `def` in a thread
    ctx: Context = request.app.state.ctx
    return ctx


Ctx = Annotated[Context, Depends(context)]


async def principal(request: Request) -> Principal:
    """Who calls: an admin, an agent, or an unknown credential (a missing one raises)."""
    return await identify(request.app.state.ctx, request.headers.get("authorization"))


async def admin(request: Request) -> str:
    return require_admin(await principal(request))


@dataclass(frozen=True, slots=True)
class AgentCall:
    ctx: Context
    agent: Caller
    generation: int  # read for this request


async def agent(request: Request) -> AgentCall:
    who = await principal(request)
    return AgentCall(request.app.state.ctx, require_agent(who), who.generation)


Admin = Annotated[str, Depends(admin)]
Agent = Annotated[AgentCall, Depends(agent)]
