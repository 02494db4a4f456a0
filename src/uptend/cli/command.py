"""`uptend command`: start, stop, restart or check-now on an agent, in under a second.

A command is stored on the server and handed to the agent at once if it long-polls (else at
its next check-in) until the agent acknowledges it; the agent carries each command out once.
"""

from typing import Annotated, Any

import typer
from rich.table import Table

from uptend.cli._options import JsonOpt, ServerOpt, TokenOpt
from uptend.cli._output import console, literal, print_json
from uptend.protocol.commands import CommandAction, CommandState

app = typer.Typer(
    add_completion=False,  # the root command owns shell completion (it has none)
    help="Send commands to agents (start, stop, restart, check-now, retry) and see what became"
    " of them.",
    epilog="Example: uptend command send web-01 restart --app demo",
)

ByIdOpt = Annotated[bool, typer.Option("--id", help="AGENT is an agent id, not a name")]


@app.command(epilog="Example: uptend command send web-01 stop --app demo --expires 10m")
def send(
    agent: Annotated[
        str | None,
        typer.Argument(metavar="[AGENT]", help="agent name (or id, with --id); or use --group"),
    ] = None,
    action: Annotated[
        CommandAction | None, typer.Argument(help="start | stop | restart | check-now | retry")
    ] = None,
    app_name: Annotated[
        str | None, typer.Option("--app", help="only this app (default: every app of the agent)")
    ] = None,
    group: Annotated[
        str | None, typer.Option("--group", help="every agent of this group, instead of AGENT")
    ] = None,
    label: Annotated[
        str | None,
        typer.Option("--label", help="every agent with this label (KEY=VALUE), instead of AGENT"),
    ] = None,
    expires: Annotated[
        str | None,
        typer.Option("--expires", help="not carried out after this long: 30s, 10m, 1h"),
    ] = None,
    by_id: ByIdOpt = False,
    server: ServerOpt = "",
    token: TokenOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Queue a command; `stop` lasts (across agent restarts) until `start`.

    `retry --app APP` lets a version of APP that failed there be tried again (as `uptend
    fleet retry`); `restart` is acknowledged once the app is back up and healthy.
    """
    from uptend.cli._client import Admin
    from uptend.cli.token import parse_duration  # here: `command --help` stays light
    from uptend.errors import ConfigError
    from uptend.protocol.commands import CommandSend

    many = group is not None or label is not None
    if many and action is None and agent is not None:  # `send --group G stop`
        action = _action(agent)
        agent = None
    if action is None:
        raise ConfigError("no command given", hint="say start, stop, restart, check-now or retry")
    seconds = None
    if expires is not None:
        seconds = float(expires) if expires.replace(".", "", 1).isdigit() else None
        seconds = seconds if seconds is not None else parse_duration(expires)
    body = CommandSend(
        action=action,
        agent=agent,
        by_id=by_id,
        group=group,
        label=label,
        app=app_name,
        expires_s=seconds,
    )
    sent = Admin(server, token).send_command(body)
    if json_out:
        print_json([c.model_dump(mode="json") for c in sent])
        return
    for c in sent:
        what = f"{c.action}{' ' + c.app if c.app else ''}"
        console.print(literal(f"command {c.id}: {what} queued for {c.agent}"))


def _action(text: str) -> CommandAction:
    from uptend.errors import ConfigError

    try:
        return CommandAction(text)
    except ValueError:
        raise ConfigError(
            f"unknown command {text!r}", hint="say start, stop, restart, check-now or retry"
        ) from None


@app.command("list", epilog="Example: uptend command list --agent web-01 --state pending --json")
def list_commands(
    agent: Annotated[
        str | None, typer.Option("--agent", help="only this agent's (name, or id with --id)")
    ] = None,
    state: Annotated[
        CommandState | None, typer.Option("--state", help="only in this state")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="at most this many, newest first")] = 100,
    by_id: ByIdOpt = False,
    server: ServerOpt = "",
    token: TokenOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Commands newest first: to whom, by whom, and what became of them."""
    from uptend.cli._client import Admin

    found = Admin(server, token).commands(agent=agent, by_id=by_id, state=state, limit=limit)
    rows = [c.model_dump(mode="json") for c in found]
    if json_out:
        print_json(rows)
        return
    console.print(table(rows))


def table(rows: list[dict[str, Any]]) -> Table:
    out = Table("id", "agent", "command", "state", "result", "sent by", "sent at")
    for c in rows:
        out.add_row(
            literal(c["id"]),
            literal(c["agent"]),
            literal(f"{c['action']}{' ' + c['app'] if c['app'] else ''}"),
            literal(c["state"]),
            literal(c["result"] or "-"),
            literal(c["sent_by"]),
            literal(c["created_at"][:19]),
        )
    return out
