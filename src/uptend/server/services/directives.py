"""What an agent should run: its group's plan (cached per generation) and its installed versions.

The plan of a group is its policy, its assignments, the head of each assigned channel and
its schedule (windows, freeze): read once per generation and group, so a check-in costs the
same with 1 or 1,000 releases and with 2,000 or 20,000 agents. Deciding from it is pure
(`directives_for`), and takes the clock as an argument: a window opening is a change of
time, not of generation, so the answer says until when it holds (`valid_until`).
"""

from collections.abc import Mapping
from datetime import datetime

from uptend.policy.desired import desired_version
from uptend.policy.schedule import Wait, may_install
from uptend.protocol import AppDirective, Directives
from uptend.server.cache import AppPlan, GroupPlan
from uptend.server.services.context import Context
from uptend.server.services.pins import resolutions
from uptend.server.services.schedule import schedule_of
from uptend.server.storage import hotpath
from uptend.server.storage import schedule as schedule_rows


async def plan_for(ctx: Context, group: str, generation: int) -> GroupPlan:
    """The group's plan as of `generation` (or newer): from memory, else one read."""
    plan = ctx.memory.plans.get(generation, group)
    if plan is None:
        async with ctx.db.read() as conn:
            settings, rows = await hotpath.group_plan(conn, group)
            windows = await schedule_rows.windows_of(conn, [group])
            freeze = await schedule_rows.freeze(conn)
            critical = await schedule_rows.critical_heads(conn, group)
            pinned = await resolutions(conn, group)
        assert settings is not None  # agents.group is a foreign key; groups are never deleted
        keep = Directives(poll_interval_s=settings[0], generation=generation, unchanged=True)
        plan = GroupPlan(
            name=group,
            poll_interval_s=settings[0],
            auto_update=settings[1],
            apps=tuple(
                AppPlan(
                    app,
                    channel,
                    head,
                    target,
                    app in critical,
                    resolved=p.resolved if (p := pinned.get((group, app))) else None,
                    resolved_target=p.target if p else None,
                )
                for app, channel, head, target in rows
            ),
            unchanged=keep.model_dump_json(
                exclude_none=True
            ).encode(),  # no nulls: credential, valid_until
            schedule=schedule_of(windows.get(group, []), freeze),
        )
        ctx.memory.plans.put(generation, group, plan)
    return plan


def directives_for(
    plan: GroupPlan,
    installed: Mapping[str, str | None],
    *,
    generation: int,
    retry: list[str],
    now: datetime,
) -> Directives:
    """Per assigned app, the version to run (and its signed target when it is the head).

    An app to be installed is held (`hold`: stage it, install nothing) while the group's
    schedule says wait; a critical head passes. `valid_until` is the first instant at which
    any of these answers changes.
    """
    apps = []
    changes: list[datetime] = []
    for a in plan.apps:
        decision = desired_version(
            app=a.app,
            channel=a.channel,
            group=plan.name,
            releases=[a.head] if a.head is not None else [],
            installed=installed.get(a.app),
            auto_update=plan.auto_update,
            resolved=a.resolved,
        )
        is_head = a.head is not None and decision.version == a.head
        is_pin = a.resolved is not None and decision.version == a.resolved.version
        directive = AppDirective(
            app=a.app,
            version=decision.version,
            pinned=decision.pinned,
            reason=decision.reason,
            target=a.head_target if is_head else a.resolved_target if is_pin else None,
            critical=is_head and a.critical,
        )
        if decision.version is not None and decision.version != installed.get(a.app):
            directive, change = _gated(plan, directive, now)
            changes += [change] if change is not None else []
        apps.append(directive)
    return Directives(
        poll_interval_s=plan.poll_interval_s,
        apps=apps,
        retry=retry,
        generation=generation,
        valid_until=min(changes, default=None),
    )


def _gated(
    plan: GroupPlan, directive: AppDirective, now: datetime
) -> tuple[AppDirective, datetime | None]:
    """The directive as the schedule allows it now, and when that answer changes."""
    verdict = may_install(plan.schedule, at=now, critical=directive.critical)
    if not isinstance(verdict, Wait):
        return directive, verdict.until
    held = directive.model_copy(
        update={
            "hold": verdict.code.value,
            "hold_until": verdict.next_at,
            "reason": verdict.message,
        }
    )
    return held, verdict.next_at
