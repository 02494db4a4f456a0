"""`uptend rollout`: see a staged rollout's waves, pause, resume or abort it, preview the next."""

from typing import Annotated

import typer
from rich.table import Table

from uptend.cli._client import Admin, ServerOpt, TokenOpt
from uptend.cli._output import console, literal, print_json
from uptend.protocol.rollouts import RolloutView

app = typer.Typer(
    add_completion=False,  # the root command owns shell completion (it has none)
    help="See, pause, resume, abort and preview staged rollouts.",
    epilog="Example: uptend rollout status demo --channel stable",
)

AppArg = Annotated[str, typer.Argument(metavar="APP")]
ChannelOpt = Annotated[
    str | None, typer.Option("--channel", help="the channel (default: the newest rollout's)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]


@app.command("status", epilog="Example: uptend rollout status demo --json")
def status(
    app_name: AppArg,
    channel: ChannelOpt = None,
    server: ServerOpt = "",
    token: TokenOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Show the app's newest rollout: its state (and why), each wave and its hosts' counts."""
    with Admin(server, token) as admin:
        _show(admin.rollout(app_name, channel), json_out)


def _command(action: str, app_name: str, channel: str | None, server: str, token: str) -> None:
    with Admin(server, token) as admin:
        _show(admin.rollout(app_name, channel, action), json_out=False)


@app.command("pause", epilog="Example: uptend rollout pause demo")
def pause(
    app_name: AppArg, channel: ChannelOpt = None, server: ServerOpt = "", token: TokenOpt = ""
) -> None:
    """Stop letting new hosts take the release; hosts already told go on."""
    _command("pause", app_name, channel, server, token)


@app.command("resume", epilog="Example: uptend rollout resume demo")
def resume(
    app_name: AppArg, channel: ChannelOpt = None, server: ServerOpt = "", token: TokenOpt = ""
) -> None:
    """Let a paused rollout go on from its open wave."""
    _command("resume", app_name, channel, server, token)


@app.command("abort", epilog="Example: uptend rollout abort demo --channel stable")
def abort(
    app_name: AppArg, channel: ChannelOpt = None, server: ServerOpt = "", token: TokenOpt = ""
) -> None:
    """End the rollout: every host that took the release goes back to its previous version."""
    _command("abort", app_name, channel, server, token)


@app.command("preview", epilog="Example: uptend rollout preview demo --channel stable --json")
def preview(
    app_name: AppArg,
    channel: Annotated[str, typer.Option("--channel", help="the channel")] = "stable",
    server: ServerOpt = "",
    token: TokenOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Which hosts each wave of the next release on the channel takes (before publishing)."""
    with Admin(server, token) as admin:
        view = admin.preview(app_name, channel)
    if json_out:
        print_json(view.model_dump(mode="json"))
        return
    console.print(literal(f"next rollout of {view.app} on {view.channel}: {view.rollout}"))
    for w in view.waves:
        shown = ", ".join(w.agents[:10]) + (" ..." if len(w.agents) > 10 else "")
        console.print(literal(f"wave {w.wave} ({w.percent:g} %): {len(w.agents)} hosts: {shown}"))


def _show(view: RolloutView, json_out: bool) -> None:
    if json_out:
        print_json(view.model_dump(mode="json"))
        return
    head = f"rollout {view.id}: {view.app} {view.version} on {view.channel}: {view.state}"
    console.print(literal(f"{head} (wave {view.wave}): {view.reason}"))
    table = Table(
        "wave", "%", "hosts", "succeeded", "failed", "soaking", "installing", "deferred", "waiting"
    )
    for w in view.waves:
        table.add_row(
            f"{w.wave}{'' if w.open else ' (closed)'}",
            f"{w.percent:g}",
            *(
                str(n)
                for n in (
                    w.hosts,
                    w.succeeded,
                    w.failed,
                    w.soaking,
                    w.installing,
                    w.deferred,
                    w.waiting,
                )
            ),
        )
    console.print(table)
    busy = [s for s in view.per_label if s.installing]
    if busy:
        shown = ", ".join(f"{s.key}={s.value} {s.installing}/{s.cap}" for s in busy)
        console.print(literal(f"installing per label (of the cap): {shown}"))
