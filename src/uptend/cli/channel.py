"""`uptend channel`: a channel's rollout plan (waves, soak, failure threshold, caps, splay)."""

from typing import Annotated

import typer

from uptend.cli._client import Admin, ServerOpt, TokenOpt
from uptend.cli._output import console, literal, print_json
from uptend.policy.rollout import OnHalt, parse_label_cap, parse_waves
from uptend.protocol.rollouts import ChannelPlan, ChannelPlanView

app = typer.Typer(
    add_completion=False,  # the root command owns shell completion (it has none)
    help="Set and show each channel's staged rollout plan.",
    epilog="Example: uptend channel set demo stable --waves 5,25,100 --soak 600",
)

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]


@app.command(
    "set",
    epilog="Example: uptend channel set demo stable --waves 5,25,100 --soak 600"
    " --max-failure-rate 0.05 --min-sample 3 --max-concurrent-per-label zone=1",
)
def set_plan(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    channel: Annotated[str, typer.Argument(metavar="CHANNEL")],
    waves: Annotated[str, typer.Option(help="cumulative percentages of hosts")] = "100",
    soak: Annotated[float, typer.Option(help="seconds each host must run healthy")] = 0.0,
    max_failure_rate: Annotated[
        float, typer.Option(help="halt when more of the reported hosts failed (0-1)")
    ] = 1.0,
    min_sample: Annotated[int, typer.Option(help="hosts reported before judging the rate")] = 1,
    max_concurrent: Annotated[
        int | None, typer.Option(help="hosts installing at once, in all")
    ] = None,
    max_concurrent_per_label: Annotated[
        list[str] | None,
        typer.Option(metavar="KEY=N", help="hosts installing at once per label value"),
    ] = None,
    on_halt: Annotated[
        OnHalt, typer.Option(help="revert: hosts that took it go back; hold: they stay")
    ] = OnHalt.REVERT,
    report_deadline: Annotated[
        float, typer.Option(help="seconds a told host may stay silent before it counts failed")
    ] = 3600.0,
    splay: Annotated[float, typer.Option(help="spread a wave's downloads over seconds")] = 0.0,
    server: ServerOpt = "",
    token: TokenOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Set the plan the channel's next release rolls out with (a running rollout keeps its own)."""
    caps = dict(parse_label_cap(c) for c in max_concurrent_per_label or [])
    plan = ChannelPlan(
        waves=list(parse_waves(waves)),
        soak_s=soak,
        max_failure_rate=max_failure_rate,
        min_sample=min_sample,
        max_concurrent=max_concurrent,
        max_concurrent_per_label=caps,
        on_halt=on_halt.value,
        report_deadline_s=report_deadline,
        splay_s=splay,
    )
    with Admin(server, token) as admin:
        view = admin.set_plan(app_name, channel, plan)
    _show(view, json_out)


@app.command("show", epilog="Example: uptend channel show demo stable --json")
def show_plan(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    channel: Annotated[str, typer.Argument(metavar="CHANNEL")],
    server: ServerOpt = "",
    token: TokenOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Show the channel's rollout plan."""
    with Admin(server, token) as admin:
        view = admin.plan(app_name, channel)
    _show(view, json_out)


def _show(view: ChannelPlanView, json_out: bool) -> None:
    if json_out:
        print_json(view.model_dump(mode="json"))
        return
    p = view.plan
    console.print(literal(f"{view.app} on {view.channel}"))
    if not view.staged:
        console.print("no staged plan: a release goes to every host at its next check-in")
        return
    caps = ", ".join(f"{k}={n}" for k, n in sorted(p.max_concurrent_per_label.items()))
    lines = [
        f"waves: {','.join(f'{w:g}' for w in p.waves)} %",
        f"soak: {p.soak_s:g} s, report deadline: {p.report_deadline_s:g} s, splay: {p.splay_s:g} s",
        f"halt above {p.max_failure_rate:g} failed once {p.min_sample} reported; on halt: "
        + p.on_halt,
        f"max concurrent: {p.max_concurrent or 'no cap'}"
        + (f"; per label: {caps}" if caps else ""),
    ]
    for line in lines:
        console.print(literal(line))
