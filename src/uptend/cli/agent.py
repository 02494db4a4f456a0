"""`uptend agent`: enroll a host, run the agent, inspect it.

The operator's commands on an agent (revoke, remove, rotate-credential) are in the same
group, from `uptend.cli.agent_admin`.
"""

import os
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from uptend.cli import agent_admin, agent_install
from uptend.cli._options import LabelsOpt
from uptend.cli._output import console, escaped_lines, literal, print_json

app = typer.Typer(
    add_completion=False,  # the root command owns shell completion (it has none)
    help="The agent: installs, runs and updates apps on this host.",
    epilog="Example: uptend agent run /var/lib/uptend-agent",
)

DataDir = Annotated[Path, typer.Argument(help="the agent's data directory")]


@app.command(
    epilog="Example: uptend agent enroll /var/lib/uptend-agent --server http://srv:8470 "
    "--token ute_... --name web-01"
)
def enroll(
    data_dir: DataDir,
    server: Annotated[str, typer.Option(help="server URL", envvar="UPTEND_SERVER")],
    token: Annotated[str, typer.Option(help="enrollment token from `uptend server init`")],
    name: Annotated[str, typer.Option(help="agent name (default: host name)")] = "",
    group: Annotated[str, typer.Option(help="group to join")] = "default",
    ca_file: Annotated[
        Path | None,
        typer.Option(help="PEM CA (or self-signed cert) to trust for an https server's cert"),
    ] = None,
    label: LabelsOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """Enroll this host: get a credential and the TUF root, checked against the token."""
    from uptend.agent.config import enroll as do_enroll
    from uptend.agent.layout import Layout
    from uptend.protocol.labels import parse_labels

    parse_labels(label or [])  # a bad label is refused before anything is sent
    host_name = name or socket.gethostname()
    config = do_enroll(
        Layout(data_dir), server, token, host_name, group, ca_file=ca_file, labels=label or []
    )
    if json_out:
        print_json({"agent_id": config.agent_id, "name": config.name, "server": config.server})
    else:
        said = literal(f"{config.name} ({config.agent_id}) with {config.server}")
        console.print(Text.assemble(("enrolled", "green"), " ", said))


@app.command(epilog="Example: uptend agent run /var/lib/uptend-agent --keep-apps-on-exit")
def run(
    data_dir: DataDir,
    once: Annotated[bool, typer.Option(help="one check-in and its updates, then exit")] = False,
    keep_apps_on_exit: Annotated[
        bool,
        typer.Option(
            "--keep-apps-on-exit",
            help="on SIGTERM or Ctrl-C leave the apps running, for the next agent to adopt "
            '(also `"keep_apps_on_exit": true` in agent.json)',
        ),
    ] = False,
) -> None:
    """Run the agent in the foreground; SIGTERM or Ctrl-C stops it and its apps cleanly.

    Apps outlive an agent that dies (kill -9, crash): the next one adopts those still running.
    """
    # Exec, same pid, into the lean entry point: typer and rich do not stay resident.
    argv = [sys.executable, "-m", "uptend.agent.resident", str(data_dir)]
    argv += ["--once"] * once + ["--keep-apps-on-exit"] * keep_apps_on_exit
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)  # noqa: S606 - our own interpreter, no shell


@app.command(epilog="Example: uptend agent status /var/lib/uptend-agent --json")
def status(
    data_dir: DataDir,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """Show what this agent runs, read from its data dir (works while it runs)."""
    from uptend.agent.layout import Layout
    from uptend.agent.localstatus import status as read_status
    from uptend.agent.selfupdate import status as self_status

    data = read_status(Layout(data_dir)) | self_status(Layout(data_dir))
    if json_out:
        print_json(data)
        return
    console.print(literal(f"agent {data['name']} ({data['agent_id']}) -> {data['server']}"))
    apps = data["apps"]
    assert isinstance(apps, dict)
    for name, a in apps.items():
        line = f"  {name}: {a['current'] or '-'} ({a['phase']}"
        line += f", pid {a['pid']})" if a["pid"] else ", not running)"
        if a["failure"]:
            line += f"  last failure: {a['failure']}"
        console.print(literal(line))


@app.command(epilog="Example: uptend agent log /var/lib/uptend-agent --app demo")
def log(
    data_dir: DataDir,
    app_name: Annotated[str | None, typer.Option("--app", help="only this app")] = None,
    count: Annotated[int, typer.Option(help="how many attempt logs, newest last")] = 1,
) -> None:
    """Print the log of the latest update attempt(s)."""
    from uptend.agent.attempts import attempt_logs
    from uptend.agent.layout import Layout

    logs = attempt_logs(Layout(data_dir).update_logs, app_name)[-count:]
    if not logs:
        console.print("no update attempts logged yet")
    for path in logs:
        console.print(literal(f"== {path.name}", "bold"))
        # Lines as they are, except what could drive the terminal (an app's output is in here).
        text = path.read_bytes().decode(errors="replace")  # no newline translation: \r shows
        sys.stdout.write("".join(f"{line}\n" for line in escaped_lines(text)))
        sys.stdout.flush()


agent_admin.register(app)
agent_install.register(app)
