"""The agent API: enroll once, then check in."""

from fastapi import APIRouter, Request, Response

from uptend.protocol import CheckIn, Directives, EnrollRequest, EnrollResponse
from uptend.server.api.deps import Agent, Ctx
from uptend.server.services import checkin as service

router = APIRouter(prefix="/api/v1", tags=["agent"])


@router.post("/enroll")
async def enroll(ctx: Ctx, body: EnrollRequest, request: Request) -> EnrollResponse:
    """Trade an enrollment token for an agent credential and the TUF root."""
    return await service.enroll(ctx, body, str(request.base_url))


@router.post("/checkin", response_model=Directives)
async def checkin(call: Agent, body: CheckIn) -> Directives | Response:
    """Report this agent's state; receive the version each app should run."""
    answer = await service.checkin(call.ctx, call.agent, call.generation, body)
    if isinstance(answer, bytes):  # "unchanged", serialized once per generation and group
        return Response(answer, media_type="application/json")
    return answer
