"""The agent's check-ins: state in, directives out (enrollment is `services.enroll`)."""

import dataclasses
import hashlib
from datetime import datetime

from uptend.errors import ConfigError
from uptend.protocol import AppState, AppStatus, CheckIn, Directives, Report
from uptend.protocol.reasons import FAILED_OUTCOMES
from uptend.protocol.targets import AGENT_APP
from uptend.server.cache import Caller, GroupPlan, Known
from uptend.server.services import commands
from uptend.server.services.context import Context, utcnow
from uptend.server.services.directives import (
    directives_for,
    late_joins,
    plan_for,
    rollout_gates,
)
from uptend.server.storage import hotpath
from uptend.server.storage import releases as release_rows
from uptend.server.storage import rollouts as rollout_rows


def _reported(body: CheckIn) -> tuple[bytes, dict[str, AppStatus]]:
    """The state an agent reports, by app (the last entry wins), and its digest.

    Computed here from the parsed body: what is recorded never rests on a client's digest.
    The repr of strings, ints, bools and None is exact and stable, and cheaper than JSON.
    """
    by_app = {status.app: status for status in body.apps}
    canonical = [body.agent_version, body.settings_version, body.settings_bad] + [
        [app, *_said(s), s.config_bad] for app, s in sorted(by_app.items())
    ]
    return hashlib.sha256(repr(canonical).encode()).digest(), by_app


def _said(s: AppStatus) -> tuple[object, ...]:
    """What an app's status says that the server records, in `AppRecord.said`'s order."""
    return (
        s.version, s.state.value, s.target, s.reason, s.restarts, s.kind, s.package,
        s.package_expected, s.package_version,
    )  # fmt: skip


def _same(before: hotpath.AppRecord, status: AppStatus) -> bool:
    return before.said == _said(status)


def _changes(
    recorded: hotpath.Recorded, reported: dict[str, AppStatus], reports: list[Report]
) -> tuple[dict[str, hotpath.AppRecord], dict[str, hotpath.AppRecord]]:
    """The agent_apps rows to insert and to update: only those whose content differs."""
    new: dict[str, hotpath.AppRecord] = {}
    changed: dict[str, hotpath.AppRecord] = {}
    for app, status in reported.items():
        before = recorded.apps.get(app)
        if before is not None and _same(before, status):
            continue
        keep_tail = before is not None and status.state is AppState.FAILED
        after = hotpath.AppRecord(
            status.version,
            status.state.value,
            status.target,
            status.reason,
            before.log_tail if before is not None and keep_tail else "",
            status.restarts,
            status.kind,
            status.package,
            status.package_expected,
            status.package_version,
        )
        (changed if before is not None else new)[app] = after
    for report in reports:  # a failure's log tail stays on the app's row for `fleet list`
        if report.outcome not in FAILED_OUTCOMES:
            continue
        app = report.app
        row = new.get(app) or changed.get(app) or recorded.apps.get(app)
        if row is not None and row.log_tail != report.log_tail:
            row = dataclasses.replace(row, log_tail=report.log_tail)
            (new if app in new else changed)[app] = row
    return new, changed


def _refuse_unknown(plan: GroupPlan, unknown: set[str]) -> None:
    """Refuse apps neither assigned to the group, published, nor on record for the agent."""
    if unknown:
        shown = ", ".join(sorted(unknown)[:5]) + (" ..." if len(unknown) > 5 else "")
        raise ConfigError(
            f"not assigned to group {plan.name}: {shown}",
            hint=f"assign it with `uptend group set {plan.name} --app APP`, or remove it from"
            " this host",
        )


async def _record(
    ctx: Context,
    agent_id: str,
    generation: int,
    plan: GroupPlan,
    body: CheckIn,
    reported: dict[str, AppStatus],
    digest: bytes,
    now: datetime,
) -> tuple[Known, list[str], bool, bool]:
    """Compare with the rows (one read); write only what differs; pick up pending retries.

    Returns what is now known, the apps to retry, whether the state was already recorded,
    and whether last_seen was written (an agent's first check-in).
    """
    async with ctx.db.read() as conn:
        recorded = await hotpath.recorded(conn, agent_id)
        # a report of uptend-agent may be of the agent's own settings, on any agent
        reports = {r.app for r in body.reports if r.app != AGENT_APP}
        unknown = {*reported, *reports} - recorded.apps.keys()
        unknown -= {a.app for a in plan.apps} if unknown else set()
        if unknown:  # rare: an app published but not assigned, or an agent making names up
            _refuse_unknown(plan, unknown - await release_rows.published(conn, unknown))
    new, changed = _changes(recorded, reported, body.reports)
    version_changed = recorded.agent_version != body.agent_version
    retry = [a.app for a in plan.apps if a.app in recorded.retry]
    if new or changed or version_changed or body.reports or retry or not recorded.seen:
        async with ctx.db.write() as conn:
            await hotpath.write_apps(conn, agent_id, now, new, changed)
            if version_changed:
                await hotpath.set_agent_version(conn, agent_id, body.agent_version)
            if body.reports:
                await hotpath.add_reports(
                    conn, [{"agent_id": agent_id, **r.model_dump()} for r in body.reports]
                )
            if retry:
                await hotpath.clear_retry(conn, agent_id, retry)
            if not recorded.seen:  # "never checked in" ends now, not at the next flush
                await hotpath.set_last_seen(conn, agent_id, now)
                await rollout_rows.join(conn, agent_id, late_joins(plan, agent_id))
        ctx.checkins.recorded += 1
    installed = {app: r.installed for app, r in recorded.apps.items()}
    installed.update({app: s.version for app, s in reported.items()})
    known = Known(digest=digest, generation=generation, installed=installed)
    ctx.memory.known.put(agent_id, known)
    same = not version_changed and all(
        app in recorded.apps and _same(recorded.apps[app], s) for app, s in reported.items()
    )
    return known, retry, same, not recorded.seen


async def checkin(
    ctx: Context, agent: Caller, generation: int, body: CheckIn
) -> Directives | bytes:
    """Record what changed in what the agent says; answer what it should run.

    The idle check-in (same state, directives of the current generation) reads only the
    generation (in `auth.identify`) and writes nothing; its last-seen time goes to memory.
    Its answer, "unchanged", comes already serialized (bytes of a `Directives`).
    """
    assert agent.agent_id is not None
    now = utcnow()
    ctx.checkins.total += 1
    plan = await plan_for(ctx, agent.group, generation)
    digest, reported = _reported(body)
    known = ctx.memory.known.get(agent.agent_id)
    retry: list[str] = []
    if known is None or known.digest != digest or known.generation != generation or body.reports:
        known, retry, same, seen = await _record(
            ctx, agent.agent_id, generation, plan, body, reported, digest, now
        )
    else:
        same, seen = True, False
    if not seen:
        ctx.lastseen.seen(agent.agent_id, now)
    queued = []  # a set lookup on the idle path: only an agent with commands reads them
    if body.acks or agent.agent_id in ctx.hub.pending:
        queued = await commands.at_checkin(ctx, agent.agent_id, body.acks)
    # What the agent holds stays true until its generation moves or its valid_until passes.
    still_valid = body.valid_until is None or now < body.valid_until
    # Settings the agent gave up are not on record: while they are the newest, it hears in
    # full that it should not run them (rare: until an operator sets newer ones).
    gave_up = plan.settings is not None and plan.settings[0] == body.settings_bad
    if body.generation == generation and same and not retry and still_valid and not gave_up:
        ctx.checkins.unchanged += 1
        if queued:
            keep = Directives(poll_interval_s=plan.poll_interval_s, generation=generation)
            return keep.model_copy(update={"unchanged": True, "commands": queued})
        return plan.unchanged
    gates = await rollout_gates(ctx, plan, agent.agent_id, known.installed, now)
    bad = {app: s.config_bad for app, s in reported.items() if s.config_bad is not None}
    answer = directives_for(
        plan,
        known.installed,
        generation=generation,
        retry=retry,
        now=now,
        gates=gates,
        bad_configs=bad,
        bad_settings=body.settings_bad,
    )
    return commands.with_commands(answer, queued)
