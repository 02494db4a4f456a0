"""What an agent should run: its group's plan (cached per generation) and its installed versions.

The plan of a group is its policy, its assignments, the head of each assigned channel and
its schedule (windows, freeze): read once per generation and group, so a check-in costs the
same with 1 or 1,000 releases and with 2,000 or 20,000 agents. Deciding from it is pure
(`directives_for`), and takes the clock as an argument: a window opening is a change of
time, not of generation, so the answer says until when it holds (`valid_until`).
"""

import asyncio
from collections.abc import Mapping
from datetime import datetime

from uptend.policy import rollout as policy
from uptend.policy.desired import desired_version
from uptend.policy.schedule import Wait, may_install
from uptend.protocol import AppDirective, Directives, ReasonCode
from uptend.protocol.targets import AGENT_APP
from uptend.server.cache import AppPlan, GroupPlan, HeadRollout
from uptend.server.services.context import Context
from uptend.server.services.pins import resolutions
from uptend.server.services.rollouts import parse_plan
from uptend.server.services.schedule import schedule_of
from uptend.server.storage import configs as config_rows
from uptend.server.storage import hotpath
from uptend.server.storage import rollouts as rollout_rows
from uptend.server.storage import schedule as schedule_rows

HOLDING = (policy.State.RUNNING, policy.State.PAUSED, policy.State.HALTED, policy.State.ABORTED)


async def plan_for(ctx: Context, group: str, generation: int) -> GroupPlan:
    """The group's plan as of `generation` (or newer): from memory, else one read.

    One read per group and generation: the check-ins that miss while it runs (after a
    publish, every agent's next one) wait for it rather than each reading the plan again.
    """
    plan = ctx.memory.plans.get(generation, group)
    if plan is not None:
        return plan
    key = (group, generation)
    build = ctx.memory.building.get(key)
    if build is None:
        build = asyncio.ensure_future(_read_plan(ctx, group, generation))
        ctx.memory.building[key] = build
        build.add_done_callback(lambda done: _built(ctx, key, done))
    return await asyncio.shield(build)  # a waiter gone (client closed) leaves it to the rest


def _built(ctx: Context, key: tuple[str, int], build: "asyncio.Future[GroupPlan]") -> None:
    ctx.memory.building.pop(key, None)
    if not build.cancelled():
        build.exception()  # retrieved: each waiter that is still there has it raised


async def _read_plan(ctx: Context, group: str, generation: int) -> GroupPlan:
    async with ctx.db.read() as conn:
        settings, rows = await hotpath.group_plan(conn, group)
        windows = await schedule_rows.windows_of(conn, [group])
        freeze = await schedule_rows.freeze(conn)
        critical = await schedule_rows.critical_heads(conn, group)
        pinned = await resolutions(conn, group)
        heads = [(app, channel, head) for app, channel, head, _ in rows if head is not None]
        rollouts = await rollout_rows.of_heads(conn, heads)
        # the agent's own settings are the config "app" uptend-agent (assigned or not)
        configs = await config_rows.effective(conn, group, [r[0] for r in rows] + [AGENT_APP])
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
                rollout=_holding(rollouts.get(app)),
                config=configs.get(app) if app != AGENT_APP else None,  # never an app's
            )
            for app, channel, head, target in rows
        ),
        unchanged=keep.model_dump_json(
            exclude_none=True
        ).encode(),  # no nulls: credential, valid_until
        schedule=schedule_of(windows.get(group, []), freeze),
        settings=configs.get(AGENT_APP),
    )
    ctx.memory.plans.put(generation, group, plan)
    return plan


def _holding(stored: rollout_rows.StoredRollout | None) -> HeadRollout | None:
    """The head's rollout, if its state can hold a host back (not completed or superseded)."""
    if stored is None or policy.State(stored.state) not in HOLDING:
        return None

    plan = parse_plan(stored.plan)
    state = policy.State(stored.state)
    r = policy.Rollout(stored.id, state, stored.wave, stored.wave_opened_at, len(plan.waves))
    return HeadRollout(r, plan, stored.version, stored.cuts())


JOINABLE = (policy.State.RUNNING, policy.State.PAUSED, policy.State.HALTED)


def late_joins(plan: GroupPlan, agent_id: str) -> list[tuple[str, int]]:
    """(rollout, wave) of each live rollout a host enrolled after its start is to wait in.

    Written at the host's first check-in (which writes anyway), not at its enrollment: an
    enrollment storm on SQLite must not queue on one more write. The host takes the wave its
    hash rank puts it in among the hosts ranked at the start, so it waits like its peers and
    the fleet view and `rollout status` count it. One whose wave is open already gets its row
    when it is let through, so the deadline of a wave opened long ago does not count it silent.
    """
    out = []
    for a in plan.apps:
        head = a.rollout
        if head is None or head.cutoffs is None or head.rollout.state not in JOINABLE:
            continue
        wave = policy.wave_of(head.rollout.id, agent_id, head.cutoffs)
        if wave > head.rollout.wave:
            out.append((head.rollout.id, wave))
    return out


async def rollout_gates(
    ctx: Context,
    plan: GroupPlan,
    agent_id: str,
    installed: Mapping[str, str | None],
    now: datetime,
) -> dict[str, tuple[policy.Gate, str | None]]:
    """Per app whose head's rollout holds hosts: the gate for this host (and a revert's target).

    A host whose rank puts it in a wave not open yet is held with no read at all. Any other
    host not on the release reads one statement per app (its row, the rollout's counts and
    its capped labels with theirs); a host let through is recorded once, taking its slots
    with conditional UPDATEs, so no two processes hand out the last slot twice.
    """
    out: dict[str, tuple[policy.Gate, str | None]] = {}
    for a in plan.apps:
        head = a.rollout
        if head is None:
            continue
        r, rplan = head.rollout, head.plan
        have = installed.get(a.app)
        took = have == head.version
        if took and r.state in (policy.State.RUNNING, policy.State.PAUSED):
            continue
        ranked = None if head.cutoffs is None else policy.wave_of(r.id, agent_id, head.cutoffs)
        if ranked is not None and ranked > r.wave and not took:  # never told: nothing to read
            row = rollout_rows.GateRow(ranked, have, None, 0, {}, {})
        else:
            keys = [k for k, _ in rplan.max_concurrent_per_label]
            async with ctx.db.read() as conn:
                row = await rollout_rows.gate_row(conn, r.id, agent_id, keys)
        known = row.wave is not None
        wave = row.wave if row.wave is not None else ranked if ranked is not None else r.waves - 1
        previous = row.previous if known else have
        busy = policy.Installing(row.installing, row.by_label)
        verdict = policy.gate(
            r,
            rplan,
            agent=agent_id,
            wave=wave,
            told=row.told_at is not None,
            took=took,
            previous=previous,
            labels=row.labels,
            busy=busy,
            now=now,
        )
        target = None
        if isinstance(verdict, policy.Take) and row.told_at is None:
            verdict = await _tell(ctx, head, agent_id, wave, have, row, now)
        elif isinstance(verdict, policy.Revert):
            async with ctx.db.read() as conn:
                target = await rollout_rows.target_of(conn, a.app, verdict.version)
        out[a.app] = (verdict, target)
    return out


async def _tell(
    ctx: Context,
    head: HeadRollout,
    agent_id: str,
    wave: int,
    have: str | None,
    row: rollout_rows.GateRow,
    now: datetime,
) -> policy.Gate:
    """Record that the host may take the release; a cap's hold if its last slot went first."""
    try:
        async with ctx.db.write() as conn:
            await rollout_rows.tell(
                conn,
                rollout_id=head.rollout.id,
                agent_id=agent_id,
                wave=wave,
                previous=have,
                known=row.wave is not None,
                cap=head.plan.max_concurrent,
                label_slots=policy.label_slots(head.plan, row.labels),
                now=now,
            )
    except rollout_rows.SlotFullError as full:  # another check-in took the last slot first
        return policy.Hold(ReasonCode.CONCURRENCY_CAP, full.what)
    return policy.Take()


def directives_for(
    plan: GroupPlan,
    installed: Mapping[str, str | None],
    *,
    generation: int,
    retry: list[str],
    now: datetime,
    gates: Mapping[str, tuple[policy.Gate, str | None]] | None = None,
    bad_configs: Mapping[str, int] | None = None,
    bad_settings: int | None = None,
) -> Directives:
    """Per assigned app, the version to run (and its signed target when it is the head).

    An app to be installed is held (`hold`: stage it, install nothing) while the group's
    schedule says wait; a critical head passes. A staged rollout's gate (`rollout_gates`)
    comes first: a host outside the open wave or over a cap keeps its version; a halted
    rollout sends the hosts that took it back (`pinned`: the agent may go down). `valid_until`
    is the first instant at which any of these answers changes. Each directive carries the
    group's config of the app, unless this host reported that very version as bad
    (`bad_configs`: it failed its health check there, or did not verify): not sent again.
    The agent's own settings go the same way (`bad_settings`: it could not check in with
    them, or refused them).
    """
    apps = []
    changes: list[datetime] = []
    gates = gates or {}
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
        verdict, revert_target = gates.get(a.app, (policy.Take(), None))
        have = installed.get(a.app)
        if isinstance(verdict, policy.Revert):
            directive = AppDirective(
                app=a.app,
                version=verdict.version,
                pinned=True,
                target=revert_target,
                reason=verdict.message,
            )
        elif isinstance(verdict, policy.Hold) and is_head and decision.version != have:
            directive = AppDirective(app=a.app, version=have, reason=verdict.message)
            again = verdict.until
            if (
                verdict.code is ReasonCode.CONCURRENCY_CAP
            ):  # a slot frees with no new generation: ask again
                again = now
            changes += [again] if again is not None else []
        elif decision.version is not None and decision.version != have:
            directive, change = _gated(plan, directive, now)
            changes += [change] if change is not None else []
        config = a.config
        if config is not None and (bad_configs or {}).get(a.app) != config[0]:
            directive = directive.model_copy(
                update={"config_version": config[0], "config_target": config[1]}
            )
        apps.append(directive)
    settings = plan.settings if plan.settings and plan.settings[0] != bad_settings else None
    return Directives(
        poll_interval_s=plan.poll_interval_s,
        apps=apps,
        retry=retry,
        generation=generation,
        valid_until=min(changes, default=None),
        settings_version=settings[0] if settings else None,
        settings_target=settings[1] if settings else None,
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
