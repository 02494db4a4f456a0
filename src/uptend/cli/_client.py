"""The admin CLI's HTTP client (httpx): errors from the server come back as UptendErrors."""

from collections.abc import Iterator
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

import httpx
import typer
from pydantic import TypeAdapter, ValidationError

from uptend.errors import ConfigError, TransientError, UptendError
from uptend.protocol import (
    AgentDetail,
    AgentPage,
    FleetSummary,
    FreezeSet,
    FreezeView,
    Group,
    GroupSet,
    Release,
    error_from_body,
)

T = TypeVar("T")

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

    def __enter__(self) -> "Admin":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

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

    # -- the admin API, typed: the CLI, the tests and the benches all come this way ----------

    def publish(self, params: dict[str, str], body: Iterator[bytes], size: int) -> Release:
        return _typed(Release, self.upload("/api/v1/releases", params, body, size))

    def releases(self, app: str | None = None) -> list[Release]:
        params = {"app": app} if app else {}
        return _typed(list[Release], self.call("GET", "/api/v1/releases", params=params))

    def set_group(self, name: str, change: GroupSet) -> Group:
        body = change.model_dump(mode="json")
        return _typed(Group, self.call("PUT", f"/api/v1/groups/{quote(name, safe='')}", json=body))

    def groups(self) -> list[Group]:
        return _typed(list[Group], self.call("GET", "/api/v1/groups"))

    def agents(self, **filters: str | int | bool | None) -> AgentPage:
        """One page of the fleet; filters as `fleet list` takes them (None: not given)."""
        params = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in filters.items()}
        wanted = {k: v for k, v in params.items() if filters[k] is not None}
        return _typed(AgentPage, self.call("GET", "/api/v1/agents", params=wanted))

    def summary(self) -> FleetSummary:
        return _typed(FleetSummary, self.call("GET", "/api/v1/fleet/summary"))

    def agent(self, key: str) -> AgentDetail:
        return _typed(AgentDetail, self.call("GET", f"/api/v1/agents/{quote(key, safe='')}"))

    def set_freeze(self, change: FreezeSet) -> FreezeView:
        body = change.model_dump(mode="json")
        return _typed(FreezeView, self.call("PUT", "/api/v1/freeze", json=body))

    def clear_freeze(self) -> None:
        self.call("DELETE", "/api/v1/freeze")

    def freeze(self) -> FreezeView | None:
        return _typed(FreezeView | None, self.call("GET", "/api/v1/freeze"))  # type: ignore[arg-type]

    def retry(self, agent: str, app: str) -> None:
        path = f"/api/v1/agents/{quote(agent, safe='')}/apps/{quote(app, safe='')}/retry"
        self.call("POST", path)


def _typed(kind: type[T], data: Any) -> T:
    """Validate an answer against its wire type: a foreign answer is an error, not a crash."""
    try:
        return TypeAdapter(kind).validate_python(data)
    except ValidationError as e:
        raise TransientError(
            f"the server's answer is not what uptend expects: {e.error_count()} errors",
            hint="check that --server / UPTEND_SERVER points at an uptend server of this version",
        ) from None


def error_from(response: httpx.Response) -> UptendError:
    return error_from_body(
        response.status_code,
        response.content,
        path=response.request.url.path,
        credential="token",
        hint="check --server / UPTEND_SERVER and --token / UPTEND_TOKEN",
    )
