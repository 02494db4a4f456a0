"""Groups: which apps their agents run, on which channel, how often they poll."""

from uptend.errors import ConfigError
from uptend.policy.pins import parse_pin
from uptend.policy.schedule import parse_windows
from uptend.protocol import Group, GroupApp, GroupSet
from uptend.protocol.names import check_name
from uptend.server.services.context import Context, utcnow
from uptend.server.services.pins import check_pin
from uptend.server.storage import audit, generation
from uptend.server.storage import groups as rows
from uptend.server.storage import pins as pin_rows
from uptend.server.storage import schedule as schedule_rows
from uptend.server.storage.db import Tx
from uptend.server.storage.tables import GroupRow

DEFAULT_POLL_INTERVAL_S = 60.0


async def ensure(tx: Tx, name: str) -> GroupRow:
    row = await rows.get(tx, name)
    if row is None:
        row = GroupRow(name=name, poll_interval_s=DEFAULT_POLL_INTERVAL_S, auto_update=True)
        await rows.add(tx, row)
    return row


async def set_group(ctx: Context, actor: str, name: str, change: GroupSet) -> Group:
    check_name("group", name)
    pin = _pin(change)
    if change.app is not None:
        check_name("app", change.app)
        check_name("channel", change.channel)
    elif change.poll_interval_s is None and change.auto_update is None and change.windows is None:
        raise ConfigError(
            f"nothing to change for group {name}",
            hint="pass --app APP --channel CHANNEL, --poll-interval, --auto-update or --window",
        )
    windows = parse_windows(change.windows) if change.windows is not None else None
    async with ctx.db.transaction() as tx:
        row = await ensure(tx, name)
        if change.poll_interval_s is not None:
            row.poll_interval_s = change.poll_interval_s
        if change.auto_update is not None:
            row.auto_update = change.auto_update
        if change.app is not None:
            await rows.set_app(tx, name, change.app, change.channel)
            if pin is not None:
                await check_pin(tx, change.app, change.channel, pin)
            if pin is not None or change.unpin:
                await pin_rows.set_pin(tx, name, change.app, pin)
        if windows is not None:
            await schedule_rows.set_windows(tx, name, [str(w) for w in windows])
        await generation.bump(tx)
        audit.record(tx, utcnow(), actor, "group.set", f"{name}: {change.model_dump_json()}")
        return (await _to_wire(tx, [row]))[0]


def _pin(change: GroupSet) -> str | None:
    """The canonical pin to set, if any; refuse --pin without --app, or with --unpin."""
    if change.pin is None and not change.unpin:
        return None
    if change.app is None:
        raise ConfigError("a pin is set per app", hint="pass --app APP with --pin or --unpin")
    if change.pin is not None and change.unpin:
        raise ConfigError(
            "--pin and --unpin contradict each other", hint="pass one of them, not both"
        )
    return None if change.pin is None else parse_pin(change.pin)


async def _to_wire(tx: Tx, groups: list[GroupRow]) -> list[Group]:
    apps = await rows.apps_of(tx, [g.name for g in groups])
    pins = await pin_rows.pins_of(tx)
    windows = await schedule_rows.windows_of(tx, [g.name for g in groups])
    return [
        Group(
            name=g.name,
            poll_interval_s=g.poll_interval_s,
            auto_update=g.auto_update,
            apps=[
                GroupApp(app=a.app, channel=a.channel, pin=pins.get((g.name, a.app)))
                for a in apps[g.name]
            ],
            windows=windows.get(g.name, []),
        )
        for g in groups
    ]


async def listing(ctx: Context) -> list[Group]:
    async with ctx.db.transaction() as tx:
        return await _to_wire(tx, await rows.listing(tx))
