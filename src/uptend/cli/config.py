"""`uptend config`: signed remote configuration of an app, and its versions.

Each version is signed as a TUF target by the key that signs the app's releases; an agent
fetches it through the signed metadata, writes it to the app's `UPTEND_CONFIG_FILE`,
restarts the app (or sends it `[app] reload_signal`) and goes back to the previous config
if the app then fails its health check. docs/config.md has the whole story.
"""

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from uptend.cli._options import JsonOpt, ServerOpt, TokenOpt
from uptend.cli._output import console, literal, literal_lines, print_json

app = typer.Typer(
    add_completion=False,
    help="Push signed configuration to apps (and the agents' own settings); see, fetch and roll"
    " back its versions.",
    epilog="Example: uptend config set demo demo.toml --group canary",
)
AppArg = Annotated[str, typer.Argument(metavar="APP", help="the app whose config it is")]
GroupOpt = Annotated[
    str | None, typer.Option("--group", help="only this group (default: every group)")
]


@app.command("set", epilog="Example: uptend config set demo ./demo.toml --group canary")
def set_config(
    app_name: AppArg,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="the config document (UTF-8)")],
    group: GroupOpt = None,
    server: ServerOpt = "",
    token: TokenOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Sign FILE as the app's next config version; agents apply it within a second.

    APP `uptend-agent` is the agents' own settings: a JSON object with any of poll_interval_s,
    log_level, precondition_commands, check_reboot, check_disk and server (docs/config.md),
    e.g. `uptend config set uptend-agent settings.json`; an agent that cannot check in with
    new settings puts its previous ones back and reports it.
    """
    from uptend.cli._client import Admin
    from uptend.errors import ConfigError
    from uptend.protocol.configs import ConfigSet

    try:
        content = file.read_bytes().decode()
    except OSError as e:
        raise ConfigError(
            f"cannot read {file}: {e.strerror or e}", hint="name a readable file"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file} is not UTF-8 text", hint="a config document is text") from None
    made = Admin(server, token).set_config(app_name, ConfigSet(content=content, group=group))
    _said(made.model_dump(mode="json"), json_out, "signed")


@app.command(epilog="Example: uptend config rollback demo --to 3")
def rollback(
    app_name: AppArg,
    to: Annotated[int, typer.Option("--to", help="the version whose content comes back")],
    server: ServerOpt = "",
    token: TokenOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Sign the content of version N again as a new version (versions only go up)."""
    from uptend.cli._client import Admin

    made = Admin(server, token).rollback_config(app_name, to)
    _said(made.model_dump(mode="json"), json_out, f"rolled back to {to} as")


def _said(view: dict[str, Any], json_out: bool, how: str) -> None:
    if json_out:
        print_json(view)
        return
    scope = f"group {view['group']}" if view["group"] else "every group"
    console.print(literal(f"config {view['app']} v{view['version']} {how} for {scope}"))


@app.command(epilog="Example: uptend config history demo --group canary --json")
def history(
    app_name: AppArg,
    group: GroupOpt = None,
    server: ServerOpt = "",
    token: TokenOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """The app's config versions, newest first (with --group: those that apply to it)."""
    from uptend.cli._client import Admin

    rows = [v.model_dump(mode="json") for v in Admin(server, token).config_history(app_name, group)]
    if json_out:
        print_json(rows)
        return
    out = Table("version", "group", "sha256", "bytes", "by", "at", "note")
    for v in rows:
        out.add_row(
            literal(v["version"]),
            literal(v["group"] or "(every group)"),
            literal(v["sha256"][:12]),
            literal(v["length"]),
            literal(v["created_by"]),
            literal(v["created_at"]),
            literal(f"rollback to {v['rollback_of']}" if v["rollback_of"] else ""),
        )
    console.print(out)


@app.command(epilog="Example: uptend config get demo --version 3 > demo.toml")
def get(
    app_name: AppArg,
    version: Annotated[
        int | None, typer.Option("--version", help="this version (default: the newest)")
    ] = None,
    server: ServerOpt = "",
    token: TokenOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Print a config version's document as it was signed (--json: with its details)."""
    import sys

    from uptend.cli._client import Admin

    doc = Admin(server, token).config(app_name, version)
    if json_out:
        print_json(doc.model_dump(mode="json"))
        return
    if sys.stdout.isatty():  # on a screen: no control characters reach the terminal
        for line in literal_lines(doc.content):
            console.print(line)
        return
    sys.stdout.write(doc.content)  # into a file or a pipe: the document byte for byte
    sys.stdout.flush()
