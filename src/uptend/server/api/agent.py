"""The agent API: enroll once, then check in."""

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.routing import APIRoute

from uptend.protocol import CheckIn, Directives, EnrollRequest, EnrollResponse
from uptend.protocol.agent_api import WaitAnswer, WaitRequest
from uptend.server import forwarded
from uptend.server.api import deps
from uptend.server.api.deps import AgentCall, Ctx, source_of
from uptend.server.errors import responses
from uptend.server.services import auth
from uptend.server.services import checkin as service
from uptend.server.services import enroll as enrollment

router = APIRouter(prefix="/api/v1", tags=["agent"])
_CALLER = "uptend.agent"  # where _AuthFirst leaves the caller, in the request's scope


REFUSED = {
    400: "the body is not text FastAPI can read (e.g. not UTF-8)",
    413: "the body is over the server's limit (UPTEND_MAX_BODY_BYTES)",
    422: "the body does not match its schema (the message says where)",
}


class _AuthFirst(APIRoute):
    """Resolves the calling agent before FastAPI reads the body: a stranger's is never read."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        parse_and_call = super().get_route_handler()

        async def handler(request: Request) -> Response:
            request.scope[_CALLER] = await deps.agent(request)
            return await parse_and_call(request)

        return handler


async def _caller(request: Request) -> AgentCall:
    call: AgentCall = request.scope[_CALLER]
    return call


@router.post(
    "/enroll",
    responses=responses(
        {
            **REFUSED,
            401: "the enrollment token is not valid",
            404: "the group does not exist",
            409: "an agent with this name is enrolled already",
            429: "too many enrollments or failed tokens from this address (Retry-After)",
        }
    ),
)
async def enroll(ctx: Ctx, body: EnrollRequest, request: Request) -> EnrollResponse:
    """Trade an enrollment token for an agent credential and the TUF root."""
    metadata_url = f"{forwarded.base_url(request, ctx.settings)}tuf/metadata/"
    targets_url = forwarded.targets_url(request, ctx.settings)
    return await enrollment.enroll(ctx, body, metadata_url, targets_url, source_of(request))


checkin_router = APIRouter(route_class=_AuthFirst)  # included in `router`, under its prefix


@checkin_router.post(
    "/checkin",
    response_model=Directives,
    responses=responses(
        {
            **REFUSED,
            401: "the agent credential is missing, not valid or revoked",
            429: "too many failed authentications from this address or id (Retry-After)",
        }
    ),
)
async def checkin(
    call: Annotated[AgentCall, Depends(_caller)], body: CheckIn, request: Request
) -> Directives | Response:
    """Report this agent's state; receive the version each app should run.

    The credential is checked before the body is read. Reports and app states are bounded
    (see the schema); an app neither assigned to the agent's group, published, nor on record
    for the agent is refused (422).
    """
    answer = await service.checkin(call.ctx, call.agent, call.generation, body)
    if call.agent.rotating:  # `uptend agent rotate-credential`: hand it a new credential
        return await auth.hand_over(call.ctx, call.agent, answer)
    wait = request.app.state.in_flight.retry_after()
    if isinstance(answer, bytes):  # "unchanged", serialized once per generation and group
        if wait is not None:  # a JSON object: one more member before its closing brace
            answer = answer[:-1] + b',"retry_after_s":%d}' % wait
        return Response(answer, media_type="application/json")
    if wait is not None:
        answer = answer.model_copy(update={"retry_after_s": float(wait)})
    return answer


@checkin_router.post(
    "/wait",
    response_model=WaitAnswer,
    responses=responses(
        {
            **REFUSED,
            401: "the agent credential is missing, not valid or revoked",
            429: "too many failed authentications from this address or id (Retry-After)",
        }
    ),
)
async def wait(call: Annotated[AgentCall, Depends(_caller)], body: WaitRequest) -> WaitAnswer:
    """A long-poll: `ring` at once when something changed for this agent, else at `wait_s`.

    Something changed: a command is queued for it, or the directives it holds (`generation`)
    are no longer current. The agent then checks in as usual. A held request costs a future,
    not a thread.
    """
    assert call.agent.agent_id is not None
    ring = await call.ctx.hub.wait(
        call.agent.agent_id, body.generation, call.generation, body.wait_s
    )
    return WaitAnswer(ring=ring)


router.include_router(checkin_router)
