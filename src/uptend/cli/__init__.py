"""The `uptend` command: one Typer root; each command group lives in its own module."""

import sys

import typer

from uptend.cli import _output

app = typer.Typer(
    name="uptend",
    help="Keep the agents on a fleet of servers up to date: signed, unbrickable, on your terms.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    epilog="Example: uptend demo",
)


def _register() -> None:
    from uptend.cli import agent, demo, fleet, group, release, server, tuf_client

    app.add_typer(server.app, name="server")
    app.add_typer(release.app, name="release")
    app.add_typer(group.app, name="group")
    app.add_typer(fleet.app, name="fleet")
    app.add_typer(agent.app, name="agent")
    app.add_typer(tuf_client.app, name="tuf-client")
    app.command("demo", epilog="Example: uptend demo --ci")(demo.demo)


_register()


def main() -> None:
    """Console entry point: expected errors become one line, a hint and an exit code."""
    try:
        app()
    except _output.UptendError as e:
        _output.fail(e)
        sys.exit(e.exit_code)
