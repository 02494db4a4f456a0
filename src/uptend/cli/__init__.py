"""The `uptend` command: one Typer root; each command group lives in its own module.

Groups load lazily (click's "Lazily Loading Subcommands"): `uptend --help` imports no group,
and `uptend agent ...` imports only `uptend.cli.agent`, not the server's FastAPI and
SQLAlchemy or the agent's TUF stack. The root lists each group by the one-line summary in
`GROUPS`; tests/test_cli_startup.py checks that each summary is its module's own help.
"""

import importlib
import sys
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand, TyperGroup

from uptend.errors import UptendError

if TYPE_CHECKING:  # typer vendors click and does not re-export its types
    from typer import _click as click

# command name -> (module whose `app` holds it, its one-line summary for `uptend --help`)
GROUPS: dict[str, tuple[str, str]] = {
    "demo": (
        "uptend.cli.demo",
        "Start a server and 3 agents, publish v1 then v2 of a sample app, watch them move.",
    ),
    "server": (
        "uptend.cli.server",
        "Run the uptend server (control plane + signed release repository).",
    ),
    "release": ("uptend.cli.release", "Publish and list releases (each one a signed TUF target)."),
    "keys": ("uptend.cli.keys", "Show, rotate, renew and export the TUF signing keys of a server."),
    "group": ("uptend.cli.group", "Manage groups of agents and their policies."),
    "fleet": ("uptend.cli.fleet", "See the fleet: versions, states, failures."),
    "config": (
        "uptend.cli.config",
        "Push signed configuration to apps (and the agents' own settings); see, fetch and roll"
        " back its versions.",
    ),
    "command": (
        "uptend.cli.command",
        "Send commands to agents (start, stop, restart, check-now, retry) and see what became"
        " of them.",
    ),
    "channel": ("uptend.cli.channel", "Set and show each channel's staged rollout plan."),
    "rollout": (
        "uptend.cli.rollout",
        "See, pause, resume, abort and preview staged rollouts.",
    ),
    "freeze": (
        "uptend.cli.freeze",
        "Freeze all installs fleet-wide for a while (critical releases still pass).",
    ),
    "agent": ("uptend.cli.agent", "The agent: installs, runs and updates apps on this host."),
    "token": ("uptend.cli.token", "Create, list and revoke admin and enrollment tokens."),
    "tuf-client": (
        "uptend.cli.tuf_client",
        "A TUF client for the tuf-conformance suite, built on the agent's fetch path.",
    ),
}


def load_command(name: str) -> "click.Command":
    """Import the module of command `name` and return its click command."""
    command = typer.main.get_command(importlib.import_module(GROUPS[name][0]).app)
    command.name = name
    return command


class _LazyGroup(TyperGroup):
    """Holds a light placeholder per group (enough for help and typo hints) until one runs."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name, (_module, summary) in GROUPS.items():
            self.add_command(TyperCommand(name, help=summary))

    def resolve_command(
        self, ctx: "click.Context", args: list[str]
    ) -> tuple[str | None, "click.Command | None", list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if name in GROUPS:
            command = load_command(name)
        return name, command, rest


app = typer.Typer(
    name="uptend",
    cls=_LazyGroup,
    help="Keep the agents on a fleet of servers up to date: signed, unbrickable, on your terms.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    epilog="Example: uptend demo",
)


@app.callback()
def _root() -> None:
    # A Typer with no command of its own needs a callback to become a group.
    pass


def main() -> None:
    """Console entry point: expected errors become one line, a hint and an exit code."""
    try:
        app()
    except UptendError as e:
        from uptend.cli import _output

        _output.fail(e)
        sys.exit(e.exit_code)
