"""`uptend freeze`: stop every install fleet-wide for a while (critical releases still pass)."""

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from uptend.cli._client import Admin, ServerOpt, TokenOpt
from uptend.cli._output import console, print_json
from uptend.errors import ConfigError
from uptend.protocol import FreezeSet, FreezeView

app = typer.Typer(
    add_completion=False,  # the root command owns shell completion (it has none)
    help="Freeze all installs fleet-wide for a while (critical releases still pass).",
    epilog='Example: uptend freeze set --until 2026-01-02T08:00+01:00 --reason "year-end"',
)

_RELATIVE = re.compile(r"\+(\d{1,6})([mhd])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
TIME_HELP = "ISO 8601 with an offset (2026-01-02T08:00+01:00, ...Z) or from now: +30m, +2h, +3d"


def parse_time(option: str, text: str, now: datetime) -> datetime:
    """An aware time from ISO 8601 with an offset, or `+N[mhd]` from `now`."""
    if m := _RELATIVE.fullmatch(text):
        return now + timedelta(**{_UNITS[m[2]]: int(m[1])})
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not a time", hint=f"write {TIME_HELP}") from None
    if at.tzinfo is None:
        raise ConfigError(
            f"{option} {text!r} has no time zone", hint=f"add an offset: write {TIME_HELP}"
        )
    return at


@app.command("set", epilog='Example: uptend freeze set --until +2d --reason "release week"')
def set_freeze(
    until: Annotated[str, typer.Option("--until", metavar="TIME", help=f"end: {TIME_HELP}")],
    start: Annotated[
        str | None, typer.Option("--from", metavar="TIME", help="start (default: now)")
    ] = None,
    reason: Annotated[str, typer.Option(help="why (shown with every held host)")] = "",
    server: ServerOpt = "",
    token: TokenOpt = "",
    json_out: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """Stop all installs from --from (default now) until --until; replaces any freeze."""
    now = datetime.now(UTC)
    change = FreezeSet(
        until=parse_time("--until", until, now),
        start=parse_time("--from", start, now) if start is not None else None,
        reason=reason,
    )
    view = Admin(server, token).set_freeze(change)
    if json_out:
        print_json(view.model_dump(mode="json"))
    else:
        _print(view)


@app.command("clear", epilog="Example: uptend freeze clear")
def clear_freeze(server: ServerOpt = "", token: TokenOpt = "") -> None:
    """End the freeze: installs resume at each host's next check-in (within its windows)."""
    Admin(server, token).clear_freeze()
    console.print("no freeze: installs follow each group's windows")


@app.command("show", epilog="Example: uptend freeze show --json")
def show_freeze(
    server: ServerOpt = "",
    token: TokenOpt = "",
    json_out: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """Show the freeze, if one is set, and whether it is in force now."""
    view = Admin(server, token).freeze()
    if json_out:
        print_json(view.model_dump(mode="json") if view is not None else None)
    elif view is None:
        console.print("no freeze: installs follow each group's windows")
    else:
        _print(view)


def _print(view: FreezeView) -> None:
    start = _utc(view.start) if view.start is not None else "now"
    state = "in force" if view.active else "not in force now"
    console.print(f"freeze {state}: from {start} until {_utc(view.until)}", highlight=False)
    if view.reason:
        console.print("reason: ", end="")
        console.print(view.reason, markup=False, highlight=False)


def _utc(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
