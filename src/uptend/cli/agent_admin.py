"""`uptend agent revoke | remove | rotate-credential`: the operator's side of an agent.

They live under `uptend agent` with the host's own commands, but talk to the server's admin
API; the HTTP client loads only when one of them runs (`uptend agent --help` stays light).
"""

from typing import TYPE_CHECKING, Annotated

import typer

from uptend.cli._options import JsonOpt, ServerOpt, TokenOpt
from uptend.cli._output import console, literal, print_json

if TYPE_CHECKING:
    from uptend.protocol.credentials import AgentRef

AgentArg = Annotated[str, typer.Argument(metavar="AGENT", help="agent name (or id, with --id)")]
ByIdOpt = Annotated[bool, typer.Option("--id", help="AGENT is an agent id, not a name")]


def revoke(
    agent: AgentArg,
    by_id: ByIdOpt = False,
    server: ServerOpt = "",
    token: TokenOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Refuse AGENT's credential from its next check-in on; it stays listed, as revoked.

    Its apps keep running on the host; it can come back only by enrolling again.
    """
    from uptend.cli._client import Admin

    _said(
        Admin(server, token).revoke_agent(agent, by_id=by_id),
        json_out,
        "revoked {name} ({id}): its credential is refused from now on",
    )


def remove(
    agent: AgentArg,
    by_id: ByIdOpt = False,
    server: ServerOpt = "",
    token: TokenOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Remove AGENT from the fleet (its credential dies with it); the audit log keeps it."""
    from uptend.cli._client import Admin

    _said(
        Admin(server, token).remove_agent(agent, by_id=by_id),
        json_out,
        "removed {name} ({id}); its name is free to enroll again",
    )


def rotate_credential(
    agent: AgentArg,
    by_id: ByIdOpt = False,
    server: ServerOpt = "",
    token: TokenOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Give AGENT a new credential at its next check-in; the old one works until then."""
    from uptend.cli._client import Admin

    _said(
        Admin(server, token).rotate_agent(agent, by_id=by_id),
        json_out,
        "{name} ({id}) gets a new credential at its next check-in",
    )


def _said(done: "AgentRef", json_out: bool, message: str) -> None:
    """Print what was done to the agent: JSON, or `message` with its name and id."""
    if json_out:
        print_json(done.model_dump(mode="json"))
        return
    console.print(literal(message.format(name=done.name, id=done.id)))


def register(app: typer.Typer) -> None:
    """Add the commands to the `uptend agent` group."""
    app.command(epilog="Example: uptend agent revoke web-01")(revoke)
    app.command(epilog="Example: uptend agent remove --id 3f2a...e1 --json")(remove)
    app.command("rotate-credential", epilog="Example: uptend agent rotate-credential web-01")(
        rotate_credential
    )
