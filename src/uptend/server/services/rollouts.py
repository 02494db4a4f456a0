"""Staged rollouts' use cases: channel plans, start at publish, operator commands, evaluation.

Every rollout transition is one transaction: a compare-and-set on the rollout's state version
(`storage.rollouts.cas`) and a bump of the generation, so two server processes can never both
move a rollout, and every process answers check-ins from the new state at once. A channel
without a plan keeps today's behaviour: a release goes to every host at its next check-in and
no rollout is recorded.
"""

import asyncio
import logging
import time
from datetime import datetime

from uptend.errors import ConfigError, ConflictError, NotFoundError
from uptend.policy import rollout as policy
from uptend.protocol.names import check_name
from uptend.protocol.rollouts import (
    ChannelPlan,
    ChannelPlanView,
    LabelSlotsView,
    PreviewView,
    PreviewWave,
    RolloutView,
    WaveView,
)
from uptend.server.services.context import Context, utcnow
from uptend.server.storage import audit, generation
from uptend.server.storage import releases as release_rows
from uptend.server.storage import rollouts as rows
from uptend.server.storage.db import BACKGROUND, Tx

log = logging.getLogger(__name__)

EVALUATE_EVERY_S = 1.0
RECHECK_S = 30.0  # with no rollout live, the evaluator still looks this often


def to_policy(plan: ChannelPlan) -> policy.Plan:
    """The pure plan of a wire plan (its checks raise `ConfigError`)."""
    return policy.Plan(
        waves=tuple(plan.waves),
        soak_s=plan.soak_s,
        max_failure_rate=plan.max_failure_rate,
        min_sample=plan.min_sample,
        max_concurrent=plan.max_concurrent,
        max_concurrent_per_label=tuple(sorted(plan.max_concurrent_per_label.items())),
        on_halt=policy.OnHalt(plan.on_halt),
        report_deadline_s=plan.report_deadline_s,
        splay_s=plan.splay_s,
    )


def parse_plan(text: str) -> policy.Plan:
    return to_policy(ChannelPlan.model_validate_json(text))


async def set_plan(
    ctx: Context, actor: str, app: str, channel: str, plan: ChannelPlan
) -> ChannelPlanView:
    """Set the channel's plan: from the next release on (a running rollout keeps its own)."""
    check_name("app", app)
    check_name("channel", channel)
    to_policy(plan)
    now = utcnow()
    async with ctx.db.transaction() as tx:
        await rows.set_plan(tx, app, channel, plan.model_dump_json(), now)
        audit.record(tx, now, actor, "channel.set", f"{app} {channel} {plan.model_dump_json()}")
    return ChannelPlanView(app=app, channel=channel, plan=plan, staged=True)


async def show_plan(ctx: Context, app: str, channel: str) -> ChannelPlanView:
    async with ctx.db.transaction() as tx:
        stored = await rows.plan(tx, app, channel)
    if stored is None:
        return ChannelPlanView(app=app, channel=channel, plan=ChannelPlan(), staged=False)
    plan = ChannelPlan.model_validate_json(stored.plan)
    return ChannelPlanView(app=app, channel=channel, plan=plan, staged=True)


async def preview(ctx: Context, app: str, channel: str) -> PreviewView:
    """The waves the next release on the channel would take, host by host (by name)."""
    async with ctx.db.transaction() as tx:
        stored = await rows.plan(tx, app, channel)
        hosts = await rows.channel_hosts(tx, app, channel)
    if stored is None:
        raise ConfigError(
            f"channel {app}/{channel} has no rollout plan: a release goes to every host at once",
            hint=f"set one with `uptend channel set {app} {channel} --waves 5,25,100`",
        )
    plan = parse_plan(stored.plan)
    names = {a: name for a, name, _ in hosts}
    of = policy.membership(stored.next_rollout, names, plan.waves)
    order = policy.ranked(stored.next_rollout, names)
    waves = [
        PreviewWave(wave=k + 1, percent=p, agents=[names[a] for a in order if of[a] == k])
        for k, p in enumerate(plan.waves)
    ]
    return PreviewView(app=app, channel=channel, rollout=stored.next_rollout, waves=waves)


async def on_publish(
    tx: Tx, actor: str, app: str, channel: str, version: str, now: datetime
) -> None:
    """In the publish's transaction (which bumps the generation), once `version` is the head.

    Supersedes the channel's live rollouts; starts one with the channel's plan, if it has one.
    """
    head = (await release_rows.heads(tx, [(app, channel)])).get((app, channel))
    if head is None or head.version != version:
        return  # an older version published late: the head, and its rollout, stay
    for rollout_id in await rows.live(tx, app, channel):
        r = await rows.by_id(tx, rollout_id)
        assert r is not None
        state = policy.transition(policy.State(r.state), policy.Event.SUPERSEDE)
        why = f"superseded by {version}"
        await rows.cas(tx, r, state=state.value, reason=why, ended_at=now)
        audit.record(tx, now, actor, "rollout.supersede", f"{r.id} {app} {r.version}: {why}")
    stored = await rows.plan(tx, app, channel)
    if stored is None:
        return
    plan = parse_plan(stored.plan)
    hosts = await rows.channel_hosts(tx, app, channel)
    ids = [a for a, _, _ in hosts]
    waves = policy.membership(stored.next_rollout, ids, plan.waves)
    await rows.start(
        tx,
        rollout_id=stored.next_rollout,
        app=app,
        channel=channel,
        version=version,
        plan_json=stored.plan,
        waves=waves,
        installed={a: v for a, _, v in hosts},
        now=now,
        max_concurrent=plan.max_concurrent,
        cutoffs=policy.cutoffs(stored.next_rollout, ids, plan.waves),
    )
    audit.record(tx, now, actor, "rollout.start", f"{stored.next_rollout} {app} {version}")


async def _find(tx: Tx, app: str, channel: str | None) -> rows.StoredRollout:
    r = await rows.latest(tx, app, channel)
    if r is None:
        where = f" on channel {channel}" if channel else ""
        raise NotFoundError(
            f"no rollout of {app}{where}",
            hint=f"set a plan (`uptend channel set {app} CHANNEL --waves 5,25,100`), then publish",
        )
    return r


async def status(ctx: Context, app: str, channel: str | None) -> RolloutView:
    async with ctx.db.transaction() as tx:
        r = await _find(tx, app, channel)
        hosts = await rows.hosts(tx, r.id, r.app)
        slots = await rows.label_slots(tx, r.id)
    return _view(r, hosts, utcnow(), slots)


async def command(
    ctx: Context, actor: str, app: str, channel: str | None, event: policy.Event
) -> RolloutView:
    """pause, resume or abort the app's newest rollout (abort: every host back to before)."""
    now = utcnow()
    async with ctx.db.transaction() as tx:
        r = await _find(tx, app, channel)
        state = policy.transition(policy.State(r.state), event)
        values: dict[str, object] = {"state": state.value, "reason": f"{event.value} by {actor}"}
        if state is policy.State.RUNNING:
            values["wave_opened_at"] = now  # the deadline counts from the resume
        if state in policy.FINAL:
            values["ended_at"] = now
        if not await rows.cas(tx, r, **values):
            raise ConflictError(
                f"rollout {r.id} changed meanwhile", hint="look at `uptend rollout status`, retry"
            )
        await generation.bump(tx)
        audit.record(tx, now, actor, f"rollout.{event.value}", f"{r.id} {app} {r.version}")
        after = await rows.by_id(tx, r.id)
        assert after is not None
        hosts = await rows.hosts(tx, r.id, r.app)
        slots = await rows.label_slots(tx, r.id)
    return _view(after, hosts, now, slots)


# -- evaluation ----------------------------------------------------------------------------------


def facts(h: rows.HostRow, version: str) -> policy.HostFacts:
    """What policy needs of one host, from its rollout row and its agent's last report."""
    healthy = h.healthy_at
    on_it = h.installed == version
    return policy.HostFacts(
        wave=h.wave,
        told_at=h.told_at,
        healthy_at=healthy,
        failed=h.outcome == "failed" or (h.state == "failed" and h.target == version),
        deferred=h.state == "deferred" and not on_it,
        restarts_then=h.restarts_then,
        restarts=h.restarts if on_it else h.restarts_then,
        seen_at=h.last_seen,
    )


def _phases(
    r: rows.StoredRollout, plan: policy.Plan, hosts: list[rows.HostRow], now: datetime
) -> dict[str, policy.Phase]:
    out = {}
    for h in hosts:
        if h.outcome in ("succeeded", "failed"):
            out[h.agent_id] = policy.Phase(h.outcome)
            continue
        if r.state != policy.State.RUNNING and h.told_at is not None and h.installed != r.version:
            out[h.agent_id] = policy.Phase.WAITING  # sent back by a halt or an abort: it waits
            continue
        opened = r.wave_opened_at if h.wave <= r.wave else None
        out[h.agent_id] = policy.phase(
            facts(h, r.version), wave_opened_at=opened, plan=plan, now=now
        )
    return out


def _view(
    r: rows.StoredRollout,
    hosts: list[rows.HostRow],
    now: datetime,
    slots: list[tuple[str, str, int, int]],
) -> RolloutView:
    plan = parse_plan(r.plan)
    phases = _phases(r, plan, hosts, now)
    sizes = [0] * len(plan.waves)
    counts: list[dict[str, int]] = [{} for _ in plan.waves]
    for h in hosts:
        k = min(h.wave, len(plan.waves) - 1)
        sizes[k] += 1
        p = phases[h.agent_id].value
        counts[k][p] = counts[k].get(p, 0) + 1
    waves = [
        WaveView(wave=k + 1, percent=pct, hosts=sizes[k], open=k <= r.wave, **counts[k])
        for k, pct in enumerate(plan.waves)
    ]
    return RolloutView(
        id=r.id,
        app=r.app,
        channel=r.channel,
        version=r.version,
        state=r.state,
        state_version=r.state_version,
        wave=r.wave + 1,
        reason=r.reason,
        started_at=r.started_at,
        ended_at=r.ended_at,
        plan=ChannelPlan.model_validate_json(r.plan),
        waves=waves,
        per_label=[LabelSlotsView(key=k, value=v, installing=n, cap=cap) for k, v, n, cap in slots],
    )


async def evaluate_one(ctx: Context, rollout_id: str, now: datetime) -> bool:
    """Record hosts' progress, then move the rollout if its facts say so; whether it moved."""
    async with ctx.db.transaction() as tx:
        r = await rows.by_id(tx, rollout_id)
        if r is None or r.state not in (policy.State.RUNNING, policy.State.PAUSED):
            return False  # a paused rollout's hosts still make progress (and free slots)
        plan = parse_plan(r.plan)
        hosts = await rows.hosts(tx, r.id, r.app)
        healthy = [  # first healthy report: its soak starts now
            (h.agent_id, now, h.restarts)
            for h in hosts
            if h.healthy_at is None and h.installed == r.version and h.state == "running"
        ]
        if healthy:
            await rows.mark(tx, r.id, healthy=healthy)
            hosts = await rows.hosts(tx, r.id, r.app)
        phases = _phases(r, plan, hosts, now)
        done = [
            (h.agent_id, p.value)
            for h in hosts
            if (p := phases[h.agent_id]) in policy.DONE and not h.outcome
        ]
        await rows.mark(tx, r.id, outcomes=done)
        freeing = [
            h.agent_id
            for h in hosts
            if h.slot and phases[h.agent_id] not in (policy.Phase.INSTALLING, policy.Phase.DEFERRED)
        ]
        await rows.free_slots(tx, r.id, freeing)  # after the host rows: `tell`'s lock order
        rollout = policy.Rollout(
            r.id, policy.State(r.state), r.wave, r.wave_opened_at, len(plan.waves)
        )
        step = policy.judge(
            rollout, plan, {h.agent_id: (h.wave, phases[h.agent_id]) for h in hosts}
        )
        if not step.changed:
            return False
        values: dict[str, object] = {"state": step.state.value, "reason": step.reason}
        if step.wave != r.wave:
            values.update(wave=step.wave, wave_opened_at=now)
        if step.state in policy.FINAL:
            values["ended_at"] = now
        if not await rows.cas(tx, r, **values):
            return False  # another process moved it first: its transition stands
        await generation.bump(tx)
        audit.record(tx, now, "evaluator", f"rollout.{step.state.value}", f"{r.id}: {step.reason}")
    log.info("rollout %s of %s %s: %s (%s)", r.id, r.app, r.version, step.state, step.reason)
    return True


async def evaluate_all(ctx: Context) -> tuple[int, int]:
    """Evaluate every live rollout once: (how many are live, how many moved).

    When one moved, held long-polls hear of it at once (and replicas, by NOTIFY).
    """
    async with ctx.db.transaction() as tx:
        await tx.connection(execution_options=BACKGROUND)  # not a check-in's read: counted apart
        ids = await rows.live(tx, states=("running", "paused"))
    moved = 0
    now = utcnow()
    for rollout_id in ids:
        moved += await evaluate_one(ctx, rollout_id, now)
    if moved:
        await ctx.hub.changed()  # after its commit: long-polls answer now, replicas are told
    return len(ids), moved


async def run_evaluator(
    ctx: Context, every_s: float = EVALUATE_EVERY_S, recheck_s: float = RECHECK_S
) -> None:
    """The periodic evaluator of one server process (others may run theirs: CAS decides).

    A rollout starts only with a new generation (the publish bumps it), which the hub hears
    of at once (in-process, or LISTEN on PostgreSQL). So once a pass found no rollout live,
    the next passes read nothing until the generation moves, or `recheck_s` passed (a
    notification lost for good must not stop rollouts).
    """
    counts = ctx.evaluator
    quiet: tuple[int, float] | None = None  # (generation, when) of a pass that found none
    while True:
        counts.passes += 1
        seen = ctx.hub.generation
        if quiet is None or quiet[0] != seen or time.monotonic() - quiet[1] > recheck_s:
            try:
                counts.queried += 1
                live, moved = await evaluate_all(ctx)
                counts.moved += moved
                quiet = (seen, time.monotonic()) if live == 0 else None
            except Exception:  # one bad pass must not stop rollouts for good
                log.exception("rollout evaluation failed; next pass in %.1f s", every_s)
                quiet = None
        await asyncio.sleep(every_s)
