"""The admin API of staged rollouts: channel plans, previews, status and commands."""

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from uptend.policy.rollout import Event
from uptend.protocol.limits import MAX_NAME
from uptend.protocol.rollouts import ChannelPlan, ChannelPlanView, PreviewView, RolloutView
from uptend.server.api.deps import Admin, Ctx
from uptend.server.errors import responses
from uptend.server.services import rollouts

router = APIRouter(prefix="/api/v1", tags=["admin"])

NameP = Annotated[str, Path(max_length=MAX_NAME)]
ChannelQ = Annotated[str | None, Query(max_length=MAX_NAME)]
_DENIED = {
    401: "the admin token is missing or not valid",
    429: "too many failed authentications from this address or token (Retry-After)",
}
_INVALID = {422: "a parameter or the body is not valid (the message says which)"}
_NONE = {404: "the app has no rollout (on that channel)"}


@router.put(
    "/channels/{app}/{channel}/plan",
    responses=responses({**_DENIED, **_INVALID, 400: "the body is not JSON FastAPI can read"}),
)
async def set_plan(
    ctx: Ctx, actor: Admin, app: NameP, channel: NameP, body: ChannelPlan
) -> ChannelPlanView:
    """Set the channel's rollout plan; it applies from the next release published on it."""
    return await rollouts.set_plan(ctx, actor, app, channel, body)


@router.get("/channels/{app}/{channel}/plan", responses=responses({**_DENIED, **_INVALID}))
async def show_plan(ctx: Ctx, _: Admin, app: NameP, channel: NameP) -> ChannelPlanView:
    """The channel's plan (`staged` false: none is set, a release goes to every host at once)."""
    return await rollouts.show_plan(ctx, app, channel)


@router.get("/channels/{app}/{channel}/preview", responses=responses({**_DENIED, **_INVALID}))
async def preview(ctx: Ctx, _: Admin, app: NameP, channel: NameP) -> PreviewView:
    """Which hosts each wave of the next release on the channel takes (the rollout's own)."""
    return await rollouts.preview(ctx, app, channel)


@router.get("/rollouts/{app}", responses=responses({**_DENIED, **_INVALID, **_NONE}))
async def status(ctx: Ctx, _: Admin, app: NameP, channel: ChannelQ = None) -> RolloutView:
    """The app's newest rollout (on `channel`): its state, waves and their hosts' counts."""
    return await rollouts.status(ctx, app, channel)


@router.post(
    "/rollouts/{app}/{action}",
    responses=responses({**_DENIED, **_INVALID, **_NONE, 409: "the rollout changed meanwhile"}),
)
async def command(
    ctx: Ctx,
    actor: Admin,
    app: NameP,
    action: Annotated[Literal["pause", "resume", "abort"], Path()],
    channel: ChannelQ = None,
) -> RolloutView:
    """pause, resume or abort the app's newest rollout (abort: every host back to before)."""
    return await rollouts.command(ctx, actor, app, channel, Event(action))
