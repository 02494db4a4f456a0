"""What an agent should run: its group's plan (cached per generation) and its installed versions.

The plan of a group is its policy, its assignments and the head of each assigned channel:
read once per generation and group, so a check-in costs the same with 1 or 1,000 releases
and with 2,000 or 20,000 agents. Deciding from it is pure (`directives_for`).
"""

from collections.abc import Mapping

from uptend.policy.desired import desired_version
from uptend.protocol import AppDirective, Directives
from uptend.server.cache import AppPlan, GroupPlan
from uptend.server.services.context import Context
from uptend.server.storage import hotpath


async def plan_for(ctx: Context, group: str, generation: int) -> GroupPlan:
    """The group's plan as of `generation` (or newer): from memory, else one read."""
    plan = ctx.memory.plans.get(generation, group)
    if plan is None:
        async with ctx.db.read() as conn:
            settings, rows = await hotpath.group_plan(conn, group)
        assert settings is not None  # agents.group is a foreign key; groups are never deleted
        keep = Directives(poll_interval_s=settings[0], generation=generation, unchanged=True)
        plan = GroupPlan(
            name=group,
            poll_interval_s=settings[0],
            auto_update=settings[1],
            apps=tuple(AppPlan(app, channel, head, target) for app, channel, head, target in rows),
            unchanged=keep.model_dump_json(exclude_none=True).encode(),  # no "credential": null
        )
        ctx.memory.plans.put(generation, group, plan)
    return plan


def directives_for(
    plan: GroupPlan,
    installed: Mapping[str, str | None],
    *,
    generation: int,
    retry: list[str],
) -> Directives:
    """Per assigned app, the version to run (and its signed target when it is the head)."""
    apps = []
    for a in plan.apps:
        decision = desired_version(
            app=a.app,
            channel=a.channel,
            group=plan.name,
            releases=[a.head] if a.head is not None else [],
            installed=installed.get(a.app),
            auto_update=plan.auto_update,
        )
        target = a.head_target if a.head is not None and decision.version == a.head else None
        apps.append(
            AppDirective(app=a.app, version=decision.version, reason=decision.reason, target=target)
        )
    return Directives(
        poll_interval_s=plan.poll_interval_s, apps=apps, retry=retry, generation=generation
    )
