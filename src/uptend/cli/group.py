"""`uptend group`: which apps a group of agents runs, on which channel, how often they poll."""

from typing import Annotated

import typer
from rich.table import Table

from uptend.cli._client import Admin, ServerOpt, TokenOpt
from uptend.cli._output import console, literal, print_json
from uptend.errors import ConfigError
from uptend.policy.pins import parse_pin
from uptend.policy.schedule import parse_windows
from uptend.protocol import GroupSet
from uptend.protocol.names import check_name

app = typer.Typer(
    add_completion=False,  # the root command owns shell completion (it has none)
    help="Manage groups of agents and their policies.",
    epilog="Example: uptend group set default --app demo --channel stable",
)


@app.command(
    "set",
    epilog="Example: uptend group set default --app demo --channel stable\n\n"
    'Maintenance windows: uptend group set web --window "Sat,Sun 02:00-05:00 Europe/Berlin"'
    ' --window "Wed 23:00-01:00 UTC"\n\n'
    "Pins: uptend group set web --app demo --pin 2.2 (or 2.3.*, or n-1; --unpin to follow"
    " the channel again)",
)
def set_group(
    name: Annotated[str, typer.Argument(metavar="GROUP", help="group name (created if new)")],
    app_name: Annotated[str | None, typer.Option("--app", help="assign this app")] = None,
    channel: Annotated[str, typer.Option(help="channel the app follows")] = "stable",
    poll_interval: Annotated[
        float | None,
        typer.Option(min=1, max=86400, help="seconds between agent check-ins (1-86400)"),
    ] = None,
    auto_update: Annotated[
        bool | None,
        typer.Option("--auto-update/--no-auto-update", help="install new releases by themselves"),
    ] = None,
    window: Annotated[
        list[str] | None,
        typer.Option(
            "--window",
            metavar="SPEC",
            help='maintenance window "DAYS HH:MM-HH:MM [ZONE]" (repeatable; replaces the'
            " group's windows): installs happen only inside one",
        ),
    ] = None,
    clear_windows: Annotated[
        bool, typer.Option("--clear-windows", help="remove the windows: install any time")
    ] = False,
    pin: Annotated[
        str | None,
        typer.Option(
            "--pin",
            metavar="SPEC",
            help="with --app: run this release instead of the channel's newest: an exact"
            " version (may be lower: a signed downgrade), a prefix 2.3.* (its newest) or n-1",
        ),
    ] = None,
    unpin: Annotated[
        bool, typer.Option("--unpin", help="with --app: remove its pin, follow the channel")
    ] = False,
    server: ServerOpt = "",
    token: TokenOpt = "",
    json_out: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """Create or change GROUP: assign an app, set poll interval, auto-update or windows."""
    check_name("group", name)  # before it becomes a URL path segment
    if app_name is not None:
        check_name("app", app_name)
        check_name("channel", channel)
    if window and clear_windows:
        raise ConfigError(
            "--window and --clear-windows contradict each other",
            hint="pass the windows to keep with --window (it replaces them all), or just"
            " --clear-windows",
        )
    if (pin is not None or unpin) and app_name is None:
        raise ConfigError("a pin is set per app", hint="pass --app APP with --pin or --unpin")
    if pin is not None and unpin:
        raise ConfigError("--pin and --unpin contradict each other", hint="pass one of them")
    if pin is not None:
        pin = parse_pin(pin)  # a bad spec is refused here, before any request
    windows = [] if clear_windows else window or None
    if windows:
        parse_windows(windows)  # a bad spec is refused here, naming its bad part
    change = GroupSet(
        app=app_name,
        channel=channel,
        poll_interval_s=poll_interval,
        auto_update=auto_update,
        windows=windows,
        pin=pin,
        unpin=unpin,
    )
    group = Admin(server, token).set_group(name, change).model_dump(mode="json")
    if json_out:
        print_json(group)
    else:
        _print([group])


@app.command("list", epilog="Example: uptend group list --json")
def list_groups(
    server: ServerOpt = "",
    token: TokenOpt = "",
    json_out: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """List groups with their apps and policies."""
    groups = [g.model_dump(mode="json") for g in Admin(server, token).groups()]
    if json_out:
        print_json(groups)
    else:
        _print(groups)


def _app(a: dict[str, object]) -> str:
    pin = f", pinned to {a['pin']}" if a.get("pin") else ""
    return f"{a['app']} ({a['channel']}{pin})"


def _print(groups: list[dict[str, object]]) -> None:
    table = Table("group", "apps (channel)", "poll interval", "auto-update", "windows")
    for g in groups:
        apps, windows = g["apps"], g.get("windows") or []
        assert isinstance(apps, list)
        assert isinstance(windows, list)
        table.add_row(
            literal(g["name"]),
            literal(", ".join(_app(a) for a in apps) or "-"),
            literal(f"{g['poll_interval_s']:g}s"),
            literal("on" if g["auto_update"] else "off"),
            literal(", ".join(str(w) for w in windows) or "any time"),
        )
    console.print(table)
