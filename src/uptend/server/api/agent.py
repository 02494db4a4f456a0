"""The agent API: enroll once, then check in."""

from fastapi import APIRouter, Request, Response

from uptend.protocol import CheckIn, Directives, EnrollRequest, EnrollResponse
from uptend.server.api.deps import Agent, Ctx, source_of
from uptend.server.services import auth
from uptend.server.services import checkin as service
from uptend.server.services import enroll as enrollment

router = APIRouter(prefix="/api/v1", tags=["agent"])


@router.post("/enroll")
async def enroll(ctx: Ctx, body: EnrollRequest, request: Request) -> EnrollResponse:
    """Trade an enrollment token for an agent credential and the TUF root."""
    return await enrollment.enroll(ctx, body, str(request.base_url), source_of(request))


@router.post("/checkin", response_model=Directives)
async def checkin(call: Agent, body: CheckIn) -> Directives | Response:
    """Report this agent's state; receive the version each app should run."""
    answer = await service.checkin(call.ctx, call.agent, call.generation, body)
    if call.agent.rotating:  # `uptend agent rotate-credential`: hand it a new credential
        return await auth.hand_over(call.ctx, call.agent, answer)
    if isinstance(answer, bytes):  # "unchanged", serialized once per generation and group
        return Response(answer, media_type="application/json")
    return answer
