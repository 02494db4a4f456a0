"""The admin CLI's HTTP client (httpx): errors from the server come back as UptendErrors."""

from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import typer

from uptend.errors import ConfigError, TransientError, UptendError
from uptend.protocol import error_from_body

ServerOpt = Annotated[
    str,
    typer.Option("--server", envvar="UPTEND_SERVER", help="server URL, e.g. http://127.0.0.1:8470"),
]
TokenOpt = Annotated[
    str, typer.Option("--token", envvar="UPTEND_TOKEN", help="admin token from `server init`")
]


class Admin:
    def __init__(self, server: str, token: str) -> None:
        if not server:
            raise ConfigError("no server given", hint="pass --server URL or set UPTEND_SERVER")
        if not token:
            raise ConfigError("no admin token given", hint="pass --token or set UPTEND_TOKEN")
        self.server = server.rstrip("/")
        self.http = httpx.Client(
            base_url=self.server,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(60.0, connect=10.0),
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise TransientError(
                f"cannot reach the server at {self.server}: {e}",
                hint="check --server / UPTEND_SERVER and that `uptend server run` is up",
            ) from None
        if response.status_code >= 400:
            raise error_from(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ConfigError(
                f"{self.server} did not answer with JSON: is it an uptend server?",
                hint="check --server / UPTEND_SERVER",
            ) from None

    def upload(self, path: str, params: dict[str, str], body: Iterator[bytes], size: int) -> Any:
        headers = {"Content-Length": str(size), "Content-Type": "application/octet-stream"}
        return self.call("POST", path, params=params, content=body, headers=headers)


def error_from(response: httpx.Response) -> UptendError:
    return error_from_body(
        response.status_code,
        response.content,
        path=response.request.url.path,
        credential="token",
        hint="check --server / UPTEND_SERVER and --token / UPTEND_TOKEN",
    )
