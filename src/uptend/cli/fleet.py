"""`uptend fleet`: who runs what, who is out of date and why.

Everything an agent said (names, versions, reasons, log tails) is hostile text: it is
printed only through `_output.literal` (no markup; control characters, newlines and bidi
overrides escaped), so each agent stays one row and `--json` stays the exact data.
"""

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from uptend.cli._client import Admin, ServerOpt, TokenOpt
from uptend.cli._output import console, literal, literal_lines, print_json
from uptend.policy.desired import LAST_SEEN_MAX_LAG_S
from uptend.protocol import AppState, ReasonCode
from uptend.protocol.labels import parse_change, parse_labels

app = typer.Typer(
    add_completion=False,  # the root command owns shell completion (it has none)
    help="See the fleet: versions, states, failures.",
    epilog="Example: uptend fleet list --outdated",
)

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
COLOUR: dict[str, str] = {
    AppState.RUNNING: "green",
    AppState.FAILED: "red",
    AppState.DEFERRED: "yellow",
    AppState.UPDATING: "cyan",
}


def _cell(value: Any, style: str = "") -> Text:
    return literal("-" if value is None or value == "" else value, style)


def _desired(app: dict[str, Any]) -> Text:
    """The desired version, marked when it is a critical release (past windows and freezes)."""
    desired = _cell(app["desired"])
    if app.get("critical") and app["desired"] == app.get("newest"):
        desired.append(" (critical)", style="bold red")
    return desired


def _state(state: str) -> Text:
    return _cell(state, COLOUR.get(state, ""))


def _kind(app: dict[str, Any]) -> Text:
    """The install kind; for a package, its name and version as dpkg/rpm report it, or drift."""
    kind, package = app.get("kind"), app.get("package")
    if package is None:
        return _cell(kind)
    if package["drift"] is not None:
        return literal(f"{kind} {package['name']}: {package['drift']}", "yellow")
    return literal(f"{kind} {package['name']} {package['version']}")


def fleet_table(agents: list[dict[str, Any]]) -> Table:
    last_seen = f"last seen (≤{LAST_SEEN_MAX_LAG_S:g}s late)"
    table = Table(
        "agent", "group", last_seen, "app", "installed", "kind", "desired", "state", "reason"
    )
    for agent in agents:
        apps = agent["apps"] or [None]
        for i, a in enumerate(apps):
            head = [
                _cell(agent["name"] + (" (revoked)" if agent.get("revoked") else "")),
                _cell(agent["group"]),
                _cell((agent["last_seen"] or "never")[:19].replace("T", " ")),
            ]
            if a is None:
                table.add_row(*head, _cell(None), Text(), Text(), Text(), Text(), Text())
                continue
            reason = a["reason"]
            table.add_row(
                *(head if i == 0 else [Text(), Text(), Text()]),
                _cell(a["app"]),
                _cell(a["installed"]),
                _kind(a),
                _desired(a),
                _state("stopped by operator" if a.get("stopped_by_operator") else a["state"]),
                literal(f"{reason['code']}: {reason['message']}"),
            )
    return table


@app.command("list", epilog="Example: uptend fleet list --outdated --reason failed --json")
def list_agents(
    outdated: Annotated[
        bool, typer.Option("--outdated", help="only agents not on the newest release")
    ] = False,
    reason: Annotated[
        ReasonCode | None, typer.Option("--reason", help="only agents with an app for this reason")
    ] = None,
    group: Annotated[str | None, typer.Option("--group", help="only agents in this group")] = None,
    app_name: Annotated[
        str | None, typer.Option("--app", help="only this app (agents assigned or running it)")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="agents per page (at most 1000)")] = 100,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="the next_cursor a previous page printed")
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(
            "--label", metavar="KEY=VALUE", help="only agents with this label (repeatable)"
        ),
    ] = None,
    server: ServerOpt = "",
    token: TokenOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """List agents in name order with, per app, installed and desired version, state and why."""
    parse_labels(label or [])  # a bad label is refused here, by name
    page = (
        Admin(server, token)
        .agents(
            outdated=outdated,
            limit=limit,
            reason=reason,
            group=group,
            app=app_name,
            cursor=cursor,
            label=label or None,
        )
        .model_dump(mode="json")
    )
    if json_out:
        print_json(page)
        return
    console.print(fleet_table(page["agents"]))
    shown = len(page["agents"])
    console.print(f"{shown} of {page['total']} agents", highlight=False)
    if page["next_cursor"]:
        console.print(literal(f"next page: --cursor {page['next_cursor']}"))


@app.command(epilog="Example: uptend fleet summary --json")
def summary(server: ServerOpt = "", token: TokenOpt = "", json_out: JsonOpt = False) -> None:
    """Per app: the versions installed, the share on the desired version, agents per reason."""
    data = Admin(server, token).summary().model_dump(mode="json")
    if json_out:
        print_json(data)
        return
    console.print(f"{data['agents']} agents, {data['outdated']} outdated", highlight=False)
    table = Table("app", "agents", "on desired", "versions", "reasons")
    for a in data["apps"]:
        table.add_row(
            _cell(a["app"]),
            _cell(a["agents"]),
            _cell(f"{a['on_desired']} ({a['share_on_desired']:.0%})"),
            literal(", ".join(f"{v}: {n}" for v, n in a["versions"].items())),
            literal(", ".join(f"{c}: {n}" for c, n in a["reasons"].items())),
        )
    console.print(table)


ByIdOpt = Annotated[bool, typer.Option("--id", help="AGENT is an agent id, not a name")]


@app.command(epilog="Example: uptend fleet show web-01 --json")
def show(
    agent: Annotated[str, typer.Argument(help="agent name (or id, with --id)")],
    by_id: ByIdOpt = False,
    server: ServerOpt = "",
    token: TokenOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Show one agent: its apps, their state, its latest commands and update reports."""
    admin = Admin(server, token)
    data = admin.agent(agent, by_id=by_id).model_dump(mode="json")
    recent = admin.commands(agent=data["agent"]["id"], by_id=True, limit=10)
    data["commands"] = [c.model_dump(mode="json") for c in recent]
    if json_out:
        print_json(data)
        return
    console.print(fleet_table([data["agent"]]))
    if labels := data["agent"]["labels"]:
        console.print(literal("labels: " + " ".join(f"{k}={v}" for k, v in labels.items())))
    if data["commands"]:
        from uptend.cli.command import table

        console.print(table(data["commands"]))
    for r in data["reports"]:
        line = f"{r['at'][:19]}  {r['app']} {r['version']}: {r['outcome']} {r['reason']}"
        console.print(literal(line))
        if r["log_tail"]:
            for tail_line in literal_lines(r["log_tail"], "dim"):
                console.print(tail_line)


@app.command(epilog="Example: uptend fleet retry web-01 demo")
def retry(
    agent: Annotated[str, typer.Argument(help="agent name (or id, with --id)")],
    app_name: Annotated[str, typer.Argument(metavar="APP", help="the app to retry")],
    by_id: ByIdOpt = False,
    server: ServerOpt = "",
    token: TokenOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Let AGENT try again a version of APP that failed there.

    A `retry` command (see `uptend command list`): delivered at once to a long-polling agent,
    again until it is acknowledged, and carried out once.
    """
    sent = Admin(server, token).retry(agent, app_name, by_id=by_id)
    if json_out:
        print_json(sent.model_dump(mode="json"))
        return
    console.print(literal(f"command {sent.id}: {agent} will retry {app_name}"))


@app.command(
    epilog="Example: uptend fleet label web-01 zone=eu-1 rack=r7\n\n"
    "Remove a label with KEY-: uptend fleet label web-01 rack-"
)
def label(
    agent: Annotated[str, typer.Argument(help="agent name (or id, with --id)")],
    changes: Annotated[
        list[str], typer.Argument(metavar="KEY=VALUE|KEY-...", help="labels to set or remove")
    ],
    by_id: ByIdOpt = False,
    server: ServerOpt = "",
    token: TokenOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Set (KEY=VALUE) or remove (KEY-) labels of AGENT; prints its labels after."""
    parse_change(changes)  # a bad label is refused here, by name
    data = Admin(server, token).label_agent(agent, changes, by_id=by_id).model_dump(mode="json")
    if json_out:
        print_json(data)
        return
    said = " ".join(f"{k}={v}" for k, v in data["labels"].items()) or "(none)"
    console.print(literal(f"{data['name']}: {said}"))
