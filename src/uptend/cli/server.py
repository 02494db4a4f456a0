"""`uptend server`: create a server data dir, run the server."""

import dataclasses
import errno
import logging
import os
import socket
import ssl
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from uptend.cli._output import console, literal, print_json
from uptend.errors import ConfigError, TransientError

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
    """Create a server: database, TUF keys and metadata, group `default`, tokens.

    DATA_DIR is made private (0700, its database and keys 0600), even if it existed.
    """
    from uptend.server.services.setup import init_data_dir
    from uptend.server.settings import Settings

    os.umask(0o077)  # nothing of a server's is for other users
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

    Raises:
        TransientError: The port is in use (one line that names it and the fix).
        ConfigError: The address cannot be listened on for another reason.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        # Listen before saying so: a client that connects on seeing the line must not be
        # refused while uvicorn is still starting (the backlog holds it until the app is up).
        sock.listen(2048)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:  # from bind, or from listen when both reuse the address
            raise TransientError(
                f"port {port} on {host} is already in use: stop what listens there "
                "or pick another port with --port"
            ) from None
        raise ConfigError(
            f"cannot listen on {host} port {port}: {e.strerror or e}",
            hint="check --host (an address of this machine) and --port (1024-65535 unprivileged)",
        ) from None
    return sock


def _check_tls(cert: Path | None, key: Path | None) -> None:
    """Refuse a TLS setup that cannot load, before anything else starts."""
    if cert is None:
        if key is not None:
            raise ConfigError("--tls-key needs --tls-cert", hint="give both, or neither")
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(
            f"cannot load the TLS certificate {cert}"
            + (f" and key {key}" if key else "")
            + f": {e.strerror or e}",
            hint="give a PEM certificate (chain) and its PEM private key, both readable",
        ) from None


@app.command(
    epilog="Example: uptend server run /var/lib/uptend --host 0.0.0.0 "
    "--tls-cert /etc/uptend/cert.pem --tls-key /etc/uptend/key.pem"
)
def run(
    data_dir: Annotated[Path, typer.Argument(help="directory made by `uptend server init`")],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0 picks a free one)")] = 8470,
    database_url: Annotated[
        str, typer.Option(help="override the database URL recorded at init")
    ] = "",
    tls_cert: Annotated[
        Path | None,
        typer.Option(help="serve HTTPS with this PEM certificate (chain), or use a TLS proxy"),
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="the PEM private key of --tls-cert")] = None,
    public_url: Annotated[
        str,
        typer.Option(help="the URL agents are told to use (behind a load balancer), not Host"),
    ] = "",
    artifacts_url: Annotated[
        str, typer.Option(help="where agents fetch release targets, e.g. a CDN")
    ] = "",
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(help="believe X-Forwarded-* from this address or range (repeatable)"),
    ] = None,
) -> None:
    """Serve the agent API, the admin API and the TUF repository.

    The first line on stdout is `listening on http://HOST:PORT` (https with --tls-cert) once
    the socket listens. Anywhere but on loopback, serve over TLS: tokens and credentials
    travel in every request.
    """
    import uvicorn

    class _Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            """Held long-polls answer first: uvicorn waits for every request to end."""
            ctx = getattr(application.state, "ctx", None)
            if ctx is not None:
                ctx.hub.release()
            await super().shutdown(sockets)

    from uptend.server.app import create_app
    from uptend.server.forwarded import check_url, networks
    from uptend.server.services.setup import load_settings, secure_data_dir
    from uptend.server.storage.db import migrate

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    os.umask(0o077)  # whatever the server writes (uploads, database journals) is its own
    settings = dataclasses.replace(
        load_settings(data_dir, database_url or None),
        public_url=check_url("--public-url", public_url) if public_url else "",
        artifacts_url=check_url("--artifacts-url", artifacts_url) if artifacts_url else "",
        trusted_proxies=tuple(trusted_proxy or ()),
    )
    networks(settings.trusted_proxies)  # a bad address fails here, not at the first request
    secure_data_dir(settings)
    _check_tls(tls_cert, tls_key)
    # Before the migrations: a port in use must leave the database as it was.
    sock = listening_socket(host, port)
    try:
        migrate(settings.db_url)
        application = create_app(settings)
    except BaseException:
        sock.close()
        raise
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        application,
        log_level="warning",
        lifespan="on",
        proxy_headers=False,  # X-Forwarded-* only from --trusted-proxy (server.forwarded)
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
    )
    server = _Server(config)
    scheme = "https" if tls_cert else "http"
    print(f"listening on {scheme}://{host}:{bound}", flush=True)  # noqa: T201 - the contract
    server.run(sockets=[sock])
