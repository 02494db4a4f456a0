"""The schedule's use cases: the fleet-wide freeze, and each group's schedule as policy sees it.

Every change bumps the generation in its own transaction, so every check-in after it answers
with the new schedule; a window opening or closing is a change of time, not of data, which
the directives' `valid_until` covers.
"""

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

from uptend.errors import ConfigError
from uptend.policy.schedule import Freeze, Schedule, Window, parse_window
from uptend.protocol import FreezeSet, FreezeView
from uptend.server.services.context import Context, utcnow
from uptend.server.storage import audit, generation
from uptend.server.storage import schedule as rows


@lru_cache(maxsize=4096)
def window(spec: str) -> Window:
    """A stored (canonical, once validated) spec, parsed once per process."""
    return parse_window(spec)


def schedule_of(specs: Sequence[str], stored: rows.StoredFreeze | None) -> Schedule:
    freeze = None
    if stored is not None:
        freeze = Freeze(until=stored.until, start=stored.starts_at, reason=stored.reason)
    return Schedule(tuple(window(s) for s in specs), freeze)


def _view(stored: rows.StoredFreeze, now: datetime) -> FreezeView:
    policy = Freeze(until=stored.until, start=stored.starts_at, reason=stored.reason)
    return FreezeView(
        start=stored.starts_at,
        until=stored.until,
        reason=stored.reason,
        set_at=stored.set_at,
        active=policy.active(now),
    )


def _check(change: FreezeSet, now: datetime) -> None:
    for name, t in (("--until", change.until), ("--from", change.start)):
        if t is not None and t.tzinfo is None:
            raise ConfigError(
                f"{name} {t.isoformat()} has no time zone",
                hint="give an offset, e.g. 2025-12-24T18:00+01:00 or 2025-12-24T17:00Z",
            )
    if change.until <= now:
        raise ConfigError(
            f"--until {change.until.isoformat()} is not in the future",
            hint="give a time after now; `uptend freeze clear` ends a freeze",
        )
    if change.start is not None and change.start >= change.until:
        raise ConfigError(
            f"--from {change.start.isoformat()} is not before --until {change.until.isoformat()}",
            hint="a freeze runs from --from (default: now) until --until",
        )
    if not change.reason.isprintable():
        raise ConfigError(
            "the freeze reason holds control characters", hint="write it on one line, plain text"
        )


async def set_freeze(ctx: Context, actor: str, change: FreezeSet) -> FreezeView:
    """Set (or replace) the fleet-wide freeze."""
    now = utcnow()
    _check(change, now)
    stored = rows.StoredFreeze(change.start, change.until, change.reason, now)
    async with ctx.db.transaction() as tx:
        await rows.set_freeze(tx, stored)
        await generation.bump(tx)
        audit.record(tx, now, actor, "freeze.set", change.model_dump_json())
    return _view(stored, now)


async def clear_freeze(ctx: Context, actor: str) -> bool:
    """End the freeze; whether there was one."""
    async with ctx.db.transaction() as tx:
        had = await rows.clear_freeze(tx)
        if had:
            await generation.bump(tx)
            audit.record(tx, utcnow(), actor, "freeze.clear", "")
    return had


async def show_freeze(ctx: Context) -> FreezeView | None:
    async with ctx.db.transaction() as tx:
        stored = await rows.freeze(tx)
    return None if stored is None else _view(stored, utcnow())
