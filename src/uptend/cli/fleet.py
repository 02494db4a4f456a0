"""`uptend fleet`: who runs what, who is out of date and why."""

from typing import Annotated, Any

import typer
from rich.table import Table

from uptend.cli._client import Admin, ServerOpt, TokenOpt
from uptend.cli._output import console, print_json

app = typer.Typer(
    add_completion=False,  # the root command owns shell completion (it has none)
    help="See the fleet: versions, states, failures.",
    epilog="Example: uptend fleet list --outdated",
)


def fleet_table(agents: list[dict[str, Any]]) -> Table:
    table = Table("agent", "group", "last seen", "app", "installed", "desired", "state", "reason")
    for agent in agents:
        apps = agent["apps"] or [None]
        for i, a in enumerate(apps):
            first = i == 0
            table.add_row(
                agent["name"] if first else "",
                agent["group"] if first else "",
                (agent["last_seen"] or "never")[:19] if first else "",
                a["app"] if a else "-",
                (a["installed"] or "-") if a else "",
                (a["desired"] or "-") if a else "",
                _state(a["state"]) if a else "",
                a["reason"] if a else "",
            )
    return table


def _state(state: str) -> str:
    colour = {"running": "green", "failed": "red", "deferred": "yellow", "updating": "cyan"}
    return f"[{colour.get(state, 'white')}]{state}[/]"


@app.command("list", epilog="Example: uptend fleet list --outdated --json")
def list_agents(
    outdated: Annotated[
        bool, typer.Option("--outdated", help="only agents not on the newest release")
    ] = False,
    server: ServerOpt = "",
    token: TokenOpt = "",
    json_out: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """List agents with, per app, the installed and desired version and the state."""
    agents = Admin(server, token).call(
        "GET", "/api/v1/agents", params={"outdated": str(outdated).lower()}
    )
    if json_out:
        print_json(agents)
    else:
        console.print(fleet_table(agents))


@app.command(epilog="Example: uptend fleet show web-01 --json")
def show(
    agent: Annotated[str, typer.Argument(help="agent name or id")],
    server: ServerOpt = "",
    token: TokenOpt = "",
    json_out: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """Show one agent: its apps, their state, and its latest update reports with log tails."""
    data = Admin(server, token).call("GET", f"/api/v1/agents/{agent}")
    if json_out:
        print_json(data)
        return
    console.print(fleet_table([data["agent"]]))
    for r in data["reports"]:
        console.print(f"{r['at'][:19]}  {r['app']} {r['version']}: {r['outcome']} {r['reason']}")
        if r["log_tail"]:
            console.print(r["log_tail"], style="dim", markup=False, highlight=False)


@app.command(epilog="Example: uptend fleet retry web-01 demo")
def retry(
    agent: Annotated[str, typer.Argument(help="agent name or id")],
    app_name: Annotated[str, typer.Argument(metavar="APP", help="the app to retry")],
    server: ServerOpt = "",
    token: TokenOpt = "",
) -> None:
    """Let AGENT try again a version of APP that failed its health check there."""
    Admin(server, token).call("POST", f"/api/v1/agents/{agent}/apps/{app_name}/retry")
    console.print(f"{agent} will retry {app_name} at its next check-in")
