"""`uptend release publish-agent`: the agent itself as a release of the app `uptend-agent`.

The wheelhouse (the uptend wheel and its dependencies' wheels) goes up as one archive with
a manifest, signed like any target; the server gives releases of `uptend-agent` the install
kind `agent` (agent/installers/agent.py). Groups opt in with
`uptend group set GROUP --app uptend-agent --channel C`.
"""

import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from uptend.cli._client import Admin, ServerOpt, TokenOpt
from uptend.cli._output import console, literal, print_json
from uptend.errors import ConfigError
from uptend.protocol.names import check_name
from uptend.protocol.targets import AGENT_APP
from uptend.protocol.versions import normalize

MANIFEST = """\
# The agent itself (install kind `agent`): run by PREFIX/bin/uptend-agent, not by this command.
[app]
command = ["bin/python", "-m", "uptend.agent.resident"]

[health]
probation = 0
"""


def publish_agent(
    version: Annotated[str, typer.Argument(help="the agent's version: its uptend wheel's")],
    wheelhouse: Annotated[
        Path, typer.Argument(help="directory of the uptend wheel and its dependencies' wheels")
    ],
    server: ServerOpt = "",
    token: TokenOpt = "",
    channel: Annotated[str, typer.Option(help="channel the release goes to")] = "stable",
    json_out: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """Publish WHEELHOUSE as release VERSION of the agent (app `uptend-agent`, kind `agent`).

    Installed agents (`uptend agent install`) in a group that follows CHANNEL for
    `uptend-agent` build it offline, qualify it in a trial and switch to it; the apps they
    run keep running.
    """
    from uptend.agent.selfupdate_env import wheel_version
    from uptend.cli.release import upload_release

    version = normalize(version)
    check_name("channel", channel)
    if not wheelhouse.is_dir():
        raise ConfigError(f"{wheelhouse} is not a directory", hint="give a wheelhouse directory")
    found = normalize(wheel_version(wheelhouse))
    if found != version:
        raise ConfigError(
            f"{wheelhouse} holds uptend {found}, not {version}",
            hint="VERSION must be the version of the uptend wheel in the wheelhouse",
        )
    tmp = Path(tempfile.mkdtemp(prefix="uptend-agent-release-"))
    try:
        (tmp / "uptend.toml").write_text(MANIFEST)
        (tmp / "wheels").mkdir()
        for wheel in sorted(wheelhouse.glob("*.whl")):
            shutil.copy2(wheel, tmp / "wheels" / wheel.name)
        release = upload_release(
            Admin(server, token), AGENT_APP, version, tmp, channel, show_progress=not json_out
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if json_out:
        print_json(release)
        return
    said = f"{release['app']} {release['version']} on {release['channel']}"
    console.print(Text.assemble(("published", "green"), " ", literal(said)))


def register(app: typer.Typer) -> None:
    """Add the command to the `uptend release` group."""
    app.command(
        "publish-agent",
        epilog="Example: uptend release publish-agent 0.2.0 ./wheelhouse --channel stable",
    )(publish_agent)
