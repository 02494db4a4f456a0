"""Operating the server itself: counters of what requests cost (admin only)."""

from typing import Any

from fastapi import APIRouter, Request

from uptend.server import stats
from uptend.server.api.deps import Admin, Ctx
from uptend.server.errors import responses

router = APIRouter(prefix="/api/v1/server", tags=["ops"])


@router.get(
    "/stats",
    responses=responses(
        {
            401: "the admin token is missing or not valid",
            429: "too many failed authentications from this address or token (Retry-After)",
        }
    ),
)
async def server_stats(ctx: Ctx, _: Admin, request: Request) -> dict[str, Any]:
    """Statements by kind, check-ins, last-seen batching, caches, authentication failures.

    `auth` counts failed authentications by reason and the 429s the rate limits answered;
    `held_long_polls` the `/wait` requests held open now; `in_flight` the requests being
    served now (this one included) and `shed` those answered 503 since the start.
    """
    gauge, ev = request.app.state.in_flight, ctx.evaluator
    memory = ctx.memory
    caches = {
        "generation": memory.plans.generation,
        "credentials_counter": memory.credentials.generation,
        "credentials": len(memory.credentials),
        "plans": len(memory.plans),
        "agents": len(memory.known),
    }
    return stats.snapshot(ctx.db.statements, ctx.checkins, ctx.lastseen, caches) | {
        "auth": ctx.guard.as_json(),
        "held_long_polls": ctx.hub.held,
        "in_flight": gauge.now,
        "evaluator": {"passes": ev.passes, "queried": ev.queried, "moved": ev.moved},
        "shed": gauge.shed,
        "agents_with_commands": len(ctx.hub.pending),
        "listener_pid": ctx.hub.listener_pid,  # PostgreSQL: the LISTEN connection's backend
    }
