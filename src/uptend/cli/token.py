"""`uptend token`: admin and enrollment tokens with a life cycle (create, list, revoke).

A token's secret is printed once, by `create`; the server keeps only its digest, so `list`
shows ids, never secrets. `server init` made the first admin and enrollment tokens; these
commands make and retire the others.
"""

import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from uptend.cli._options import JsonOpt, ServerOpt, TokenOpt
from uptend.cli._output import console, print_json
from uptend.errors import ConfigError

app = typer.Typer(
    add_completion=False,  # the root command owns shell completion (it has none)
    help="Create, list and revoke admin and enrollment tokens.",
    epilog="Example: uptend token create --role enroll --group web --expires 7d --max-uses 50",
)

_UNIT_S = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> float:
    """Seconds in `90d`, `12h`, `1d12h`, `30m`, `3600s` or `2w`."""
    spec = text.strip().lower()
    parts = re.findall(r"(\d+)([wdhms])", spec)
    if not parts or "".join(n + u for n, u in parts) != spec:
        raise ConfigError(
            f"cannot read the duration {text!r}",
            hint="use a number and a unit: 90d, 12h, 1d12h, 30m, 3600s, 2w",
        )
    seconds = sum(int(n) * _UNIT_S[u] for n, u in parts)
    if seconds <= 0:
        raise ConfigError(f"the duration {text!r} is zero", hint="give a positive duration")
    return float(seconds)


def _when(value: str | None) -> str:
    return "-" if value is None else datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M")


@app.command(
    epilog="Example: uptend token create --role enroll --group web --expires 7d --max-uses 50"
)
def create(
    role: Annotated[str, typer.Option("--role", help="admin (the admin API) or enroll")],
    group: Annotated[
        str | None, typer.Option("--group", help="enroll: agents enrolled with it join GROUP")
    ] = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="lifetime, e.g. 90d, 12h, 1d12h (default: none)")
    ] = None,
    max_uses: Annotated[
        int | None, typer.Option("--max-uses", help="enroll: at most N enrollments")
    ] = None,
    name: Annotated[str, typer.Option("--name", help="what it is for (shown by `list`)")] = "",
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="on the server host: write to this server's database directly, no admin "
            "token needed (the way back in when every admin token expired or was lost)",
        ),
    ] = None,
    server: ServerOpt = "",
    token: TokenOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Create a token and print its secret: this is the only time it is shown."""
    from uptend.protocol.credentials import TokenCreate, TokenRole

    if role not in ("admin", "enroll"):
        raise ConfigError(f"unknown role {role!r}", hint="use --role admin or --role enroll")
    body = TokenCreate(
        role=TokenRole(role),
        name=name,
        group=group,
        expires_in_s=parse_duration(expires) if expires else None,
        max_uses=max_uses,
    )
    if data_dir is not None:
        from uptend.server.services.setup import create_token_locally

        made = create_token_locally(data_dir, body)
    else:
        from uptend.cli._client import Admin

        made = Admin(server, token).create_token(body)
    if json_out:
        print_json({"token": made.token, **made.info.model_dump(mode="json")})
        return
    console.print(Text(f"token #{made.info.id} ({role}): {made.token}"))
    console.print("[yellow]note:[/] this is the only time the secret is shown; store it now.")


@app.command("list", epilog="Example: uptend token list --json")
def list_tokens(server: ServerOpt = "", token: TokenOpt = "", json_out: JsonOpt = False) -> None:
    """List every token (never a secret): role, name, group, uses, expiry, state."""
    from uptend.cli._client import Admin

    found = [t.model_dump(mode="json") for t in Admin(server, token).tokens()]
    if json_out:
        print_json(found)
        return
    console.print(token_table(found))


def token_table(found: list[dict[str, Any]]) -> Table:
    table = Table("id", "role", "name", "group", "created", "last used", "uses", "expires", "state")
    for t in found:
        uses = "-" if t["uses"] is None else str(t["uses"])
        if t["max_uses"] is not None:
            uses += f" of {t['max_uses']}"
        cells = [
            str(t["id"]),
            t["role"],
            t["name"] or "-",
            t["group"] or "-",
            _when(t["created_at"]),
            _when(t["last_used"]),
            uses,
            _when(t["expires_at"]),
            t["state"],
        ]
        table.add_row(*(Text(c) for c in cells))
    return table


@app.command(epilog="Example: uptend token revoke 3")
def revoke(
    token_id: Annotated[int, typer.Argument(metavar="ID", help="the id `uptend token list` shows")],
    server: ServerOpt = "",
    token: TokenOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Revoke a token for good: refused from the next request on, on every server process."""
    from uptend.cli._client import Admin

    done = Admin(server, token).revoke_token(token_id)
    if json_out:
        print_json(done.model_dump(mode="json"))
        return
    console.print(Text(f"revoked token #{done.id} ({done.role.value})"))
