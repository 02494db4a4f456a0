"""The admin CLI's HTTP client (httpx): errors from the server come back as UptendErrors."""

import json
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import typer

from uptend.errors import (
    BY_NAME,
    AuthError,
    ConfigError,
    NotFoundError,
    TransientError,
    UptendError,
)

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
    try:
        body = response.json()
        cls = BY_NAME.get(str(body.get("error")), UptendError)
        return cls(str(body["message"]), hint=str(body.get("hint", "")))
    except (ValueError, KeyError, AttributeError):
        pass
    if response.status_code == 422:
        try:
            detail = json.dumps(response.json().get("detail"))
        except ValueError:
            detail = response.text[:200]
        return ConfigError(f"the server refused the request: {detail}")
    if response.status_code in (401, 403):
        return AuthError("the server refused the token", hint="check --token / UPTEND_TOKEN")
    if response.status_code == 404:
        return NotFoundError(
            f"the server has no {response.request.url.path}",
            hint="check --server / UPTEND_SERVER, and the names in the command",
        )
    return TransientError(f"the server answered {response.status_code}: {response.text[:200]}")
