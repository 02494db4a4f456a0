"""The agent API: enroll once, then check in."""

from typing import Annotated

from fastapi import APIRouter, Header, Request

from uptend.protocol import CheckIn, Directives, EnrollRequest, EnrollResponse
from uptend.server.api.deps import Ctx
from uptend.server.services import checkin as service

router = APIRouter(prefix="/api/v1", tags=["agent"])


@router.post("/enroll")
async def enroll(ctx: Ctx, body: EnrollRequest, request: Request) -> EnrollResponse:
    """Trade an enrollment token for an agent credential and the TUF root."""
    return await service.enroll(ctx, body, str(request.base_url))


@router.post("/checkin")
async def checkin(
    ctx: Ctx, body: CheckIn, authorization: Annotated[str | None, Header()] = None
) -> Directives:
    """Report this agent's state; receive the version each app should run."""
    return await service.checkin(ctx, authorization, body)
