"""`uptend agent install | install-service`: the agent as an installed, self-updating program.

`install` lays out PREFIX (agent/selfupdate.py says what is where): an environment built
offline from a wheelhouse, the stdlib launcher, the data dir and the enrollment.
"""

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from uptend.cli._options import LabelsOpt
from uptend.cli._output import console, literal, print_json

PrefixArg = Annotated[Path, typer.Argument(help="where the agent is installed")]


def install(
    prefix: PrefixArg,
    server: Annotated[str, typer.Option(help="server URL", envvar="UPTEND_SERVER")],
    token: Annotated[str, typer.Option(help="enrollment token from `uptend server init`")],
    name: Annotated[str, typer.Option(help="agent name (default: host name)")] = "",
    group: Annotated[str, typer.Option(help="group to join")] = "default",
    label: LabelsOpt = None,
    wheelhouse: Annotated[
        Path | None,
        typer.Option(
            help="the uptend wheel and its dependencies' wheels (default: a wheelhouse of "
            "the running installation, built from its source tree)"
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """Install the agent under PREFIX, enroll it, and point the launcher at this version.

    Run it with PREFIX/bin/uptend-agent (or the unit of `uptend agent install-service`).
    """
    import socket

    from uptend.agent import files, launcher, selfupdate_env
    from uptend.agent.config import enroll
    from uptend.agent.layout import Layout
    from uptend.errors import ConfigError
    from uptend.protocol.labels import parse_labels

    labels = label or []
    parse_labels(labels)  # a bad label is refused before anything is built or written
    prefix = prefix.resolve()
    layout = Layout(prefix / "data")
    if layout.config.exists():
        raise ConfigError(
            f"{prefix} already holds an enrolled agent",
            hint="the installed agent updates itself: publish a new one with "
            "`uptend release publish-agent`",
        )
    with tempfile.TemporaryDirectory(prefix="uptend-wheelhouse-") as tmp:
        wheels = wheelhouse or selfupdate_env.make_wheelhouse(Path(tmp))
        version = selfupdate_env.build_env(wheels, prefix / "versions")
    (prefix / "bin").mkdir(parents=True, exist_ok=True)
    script = f"#!{selfupdate_env.base_python()} -I\n" + Path(launcher.__file__).read_text()
    files.write_atomically(prefix / "bin" / "uptend-agent", script.encode(), mode=0o755)
    layout.root.mkdir(mode=0o700, exist_ok=True)
    layout.make()
    state = launcher.load(prefix)
    state.update(current=version, good=version, boots=0)
    launcher.save(prefix, state)
    config = enroll(layout, server, token, name or socket.gethostname(), group, labels=labels)
    out = {
        "prefix": str(prefix),
        "agent_version": version,
        "launcher": str(prefix / "bin" / "uptend-agent"),
        "agent_id": config.agent_id,
        "name": config.name,
    }
    if json_out:
        print_json(out)
        return
    console.print(literal(f"installed uptend agent {version} at {prefix} as {config.name}"))
    console.print(literal(f"run it: {out['launcher']}  (or `uptend agent install-service`)"))


def install_service(
    prefix: PrefixArg,
    output: Annotated[
        Path | None, typer.Option(help="write the unit here (default: print it)")
    ] = None,
) -> None:
    """Write a systemd unit that runs the installed agent under PREFIX.

    Restart=always, KillMode=process (the apps survive an agent restart), Type=notify with
    WatchdogSec: the agent sends READY=1 and WATCHDOG=1 on $NOTIFY_SOCKET.
    """
    from uptend.agent import files, selfupdate
    from uptend.errors import ConfigError

    if not (prefix / "bin" / "uptend-agent").is_file():
        raise ConfigError(
            f"{prefix} holds no installed agent (no bin/uptend-agent)",
            hint="install one first: uptend agent install PREFIX --server URL --token T",
        )
    text = selfupdate.unit_text(prefix)
    if output is None:
        typer.echo(text, nl=False)
        return
    files.write_atomically(output, text.encode(), mode=0o644)
    console.print(literal(f"wrote {output}: systemctl daemon-reload && systemctl enable --now"))


def register(app: typer.Typer) -> None:
    """Add the commands to the `uptend agent` group."""
    app.command(
        epilog="Example: uptend agent install /opt/uptend-agent --server http://srv:8470 "
        "--token ute_... --name web-01 --label zone=eu-1"
    )(install)
    app.command(
        "install-service",
        epilog="Example: uptend agent install-service /opt/uptend-agent "
        "--output /etc/systemd/system/uptend-agent.service",
    )(install_service)
