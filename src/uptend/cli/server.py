"""`uptend server`: create a server data dir, run the server."""

import logging
import socket
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from uptend.cli._output import console, literal, print_json

app = typer.Typer(
    add_completion=False,  # the root command owns shell completion (it has none)
    help="Run the uptend server (control plane + signed release repository).",
    epilog="Example: uptend server init ./srv && uptend server run ./srv",
)


@app.command(epilog="Example: uptend server init /var/lib/uptend --json")
def init(
    data_dir: Annotated[Path, typer.Argument(help="new, empty directory for the server")],
    database_url: Annotated[
        str, typer.Option(help="PostgreSQL URL (default: SQLite file in DATA_DIR)")
    ] = "",
    json_out: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """Create a server: database, TUF keys and metadata, group `default`, tokens."""
    from uptend.server.services.setup import init_data_dir
    from uptend.server.settings import Settings

    result = init_data_dir(Settings(data_dir=data_dir, database_url=database_url))
    if json_out:
        print_json(
            {
                "data_dir": str(result.data_dir),
                "database_url": result.database_url,
                "admin_token": result.admin_token,
                "enroll_token": result.enroll_token,
                "root_fingerprint": result.root_fingerprint,
            }
        )
        return
    console.print(
        Text.assemble(("created", "green"), " ", literal(f"server data dir {result.data_dir}"))
    )
    console.print(literal(f"admin token:   {result.admin_token}"))
    console.print(literal(f"enroll token:  {result.enroll_token}"))
    keys = result.data_dir / "tuf" / "keys"
    console.print(
        Text.assemble(
            ("note:", "yellow"),
            " ",
            literal(
                f"all four TUF keys are in {keys} (0600); "
                "keep this directory private and backed up."
            ),
        )
    )


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket whose accepted connections get TCP_NODELAY.

    The protocol must be IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on an accepted socket
    only when its `proto` says TCP, and without it each response on a kept-alive connection
    waits ~40 ms for the client's delayed ACK.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    # Listen before saying so: a client that connects on seeing the line must not be refused
    # while uvicorn is still starting (the backlog holds it until the app is up).
    sock.listen(2048)
    return sock


@app.command(epilog="Example: uptend server run /var/lib/uptend --port 8470")
def run(
    data_dir: Annotated[Path, typer.Argument(help="directory made by `uptend server init`")],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0 picks a free one)")] = 8470,
    database_url: Annotated[
        str, typer.Option(help="override the database URL recorded at init")
    ] = "",
) -> None:
    """Serve the agent API, the admin API and the TUF repository.

    The first line on stdout is `listening on http://HOST:PORT` once the socket listens.
    """
    import uvicorn

    from uptend.server.app import create_app
    from uptend.server.services.setup import load_settings
    from uptend.server.storage.db import migrate

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = load_settings(data_dir, database_url or None)
    migrate(settings.db_url)
    application = create_app(settings)
    sock = listening_socket(host, port)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(application, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    print(f"listening on http://{host}:{bound}", flush=True)  # noqa: T201 - the contract
    server.run(sockets=[sock])
