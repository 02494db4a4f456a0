"""The admin CLI's HTTP client (httpx): errors from the server come back as UptendErrors."""

from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter, ValidationError

from uptend.cli._options import ServerOpt as ServerOpt  # re-exported for the command modules
from uptend.cli._options import TokenOpt as TokenOpt
from uptend.errors import ConfigError, TransientError, UptendError
from uptend.protocol import (
    Agent,
    AgentDetail,
    AgentPage,
    FleetSummary,
    FreezeSet,
    FreezeView,
    Group,
    GroupSet,
    LabelChange,
    Release,
    error_from_body,
)
from uptend.protocol.commands import CommandSend, CommandView
from uptend.protocol.configs import ConfigDocument, ConfigSet, ConfigView
from uptend.protocol.credentials import AgentRef, TokenCreate, TokenCreated, TokenInfo
from uptend.protocol.rollouts import ChannelPlan, ChannelPlanView, PreviewView, RolloutView

T = TypeVar("T")


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

    def agents(self, **filters: str | int | bool | list[str] | None) -> AgentPage:
        """One page of the fleet; filters as `fleet list` takes them (None: not given)."""
        params = {k: _param(v) for k, v in filters.items()}
        wanted = {k: v for k, v in params.items() if filters[k] is not None}
        return _typed(AgentPage, self.call("GET", "/api/v1/agents", params=wanted))

    def summary(self) -> FleetSummary:
        return _typed(FleetSummary, self.call("GET", "/api/v1/fleet/summary"))

    def agent(self, key: str, *, by_id: bool = False) -> AgentDetail:
        """One agent by name (or by id with `by_id`: the two are never mixed up)."""
        return _typed(AgentDetail, self._on_agent("GET", key, "", by_id))

    def label_agent(self, key: str, labels: list[str], *, by_id: bool = False) -> Agent:
        body = LabelChange(labels=labels).model_dump(mode="json")
        params = {"by_id": "true"} if by_id else {}
        path = f"/api/v1/agents/{quote(key, safe='')}/labels"
        return _typed(Agent, self.call("POST", path, params=params, json=body))

    def retry(self, agent: str, app: str, *, by_id: bool = False) -> CommandView:
        data = self._on_agent("POST", agent, f"/apps/{quote(app, safe='')}/retry", by_id)
        return _typed(CommandView, data)

    def revoke_agent(self, key: str, *, by_id: bool = False) -> AgentRef:
        return _typed(AgentRef, self._on_agent("POST", key, "/revoke", by_id))

    def rotate_agent(self, key: str, *, by_id: bool = False) -> AgentRef:
        return _typed(AgentRef, self._on_agent("POST", key, "/rotate-credential", by_id))

    def remove_agent(self, key: str, *, by_id: bool = False) -> AgentRef:
        return _typed(AgentRef, self._on_agent("DELETE", key, "", by_id))

    def _on_agent(self, method: str, key: str, then: str, by_id: bool) -> Any:
        params = {"by_id": "true"} if by_id else {}
        return self.call(method, f"/api/v1/agents/{quote(key, safe='')}{then}", params=params)

    def send_command(self, body: CommandSend) -> list[CommandView]:
        data = self.call("POST", "/api/v1/commands", json=body.model_dump(mode="json"))
        return _typed(list[CommandView], data)

    def commands(self, **filters: str | int | bool | None) -> list[CommandView]:
        params = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in filters.items()}
        wanted = {k: v for k, v in params.items() if filters[k] is not None}
        return _typed(list[CommandView], self.call("GET", "/api/v1/commands", params=wanted))

    def set_config(self, app: str, body: ConfigSet) -> ConfigView:
        path = f"/api/v1/apps/{quote(app, safe='')}/config"
        return _typed(ConfigView, self.call("POST", path, json=body.model_dump(mode="json")))

    def rollback_config(self, app: str, to: int) -> ConfigView:
        path = f"/api/v1/apps/{quote(app, safe='')}/config/rollback"
        return _typed(ConfigView, self.call("POST", path, json={"to": to}))

    def config_history(self, app: str, group: str | None) -> list[ConfigView]:
        params = {"group": group, "limit": "1000"} if group else {"limit": "1000"}
        path = f"/api/v1/apps/{quote(app, safe='')}/config"
        return _typed(list[ConfigView], self.call("GET", path, params=params))

    def config(self, app: str, version: int | None) -> ConfigDocument:
        which = f"config/{version}" if version is not None else "config-current"
        path = f"/api/v1/apps/{quote(app, safe='')}/{which}"
        return _typed(ConfigDocument, self.call("GET", path))

    def create_token(self, body: TokenCreate) -> TokenCreated:
        data = self.call("POST", "/api/v1/tokens", json=body.model_dump(mode="json"))
        return _typed(TokenCreated, data)

    def tokens(self) -> list[TokenInfo]:
        return _typed(list[TokenInfo], self.call("GET", "/api/v1/tokens"))

    def revoke_token(self, token_id: int) -> TokenInfo:
        return _typed(TokenInfo, self.call("POST", f"/api/v1/tokens/{token_id}/revoke"))

    def set_freeze(self, change: FreezeSet) -> FreezeView:
        body = change.model_dump(mode="json")
        return _typed(FreezeView, self.call("PUT", "/api/v1/freeze", json=body))

    def clear_freeze(self) -> None:
        self.call("DELETE", "/api/v1/freeze")

    def freeze(self) -> FreezeView | None:
        return _typed(FreezeView | None, self.call("GET", "/api/v1/freeze"))  # type: ignore[arg-type]

    def set_plan(self, app: str, channel: str, plan: ChannelPlan) -> ChannelPlanView:
        path = f"/api/v1/channels/{quote(app, safe='')}/{quote(channel, safe='')}/plan"
        return _typed(ChannelPlanView, self.call("PUT", path, json=plan.model_dump(mode="json")))

    def plan(self, app: str, channel: str) -> ChannelPlanView:
        path = f"/api/v1/channels/{quote(app, safe='')}/{quote(channel, safe='')}/plan"
        return _typed(ChannelPlanView, self.call("GET", path))

    def preview(self, app: str, channel: str) -> PreviewView:
        path = f"/api/v1/channels/{quote(app, safe='')}/{quote(channel, safe='')}/preview"
        return _typed(PreviewView, self.call("GET", path))

    def rollout(
        self, app: str, channel: str | None = None, action: str | None = None
    ) -> RolloutView:
        path = f"/api/v1/rollouts/{quote(app, safe='')}" + (f"/{action}" if action else "")
        params = {"channel": channel} if channel else {}
        return _typed(RolloutView, self.call("POST" if action else "GET", path, params=params))


def public_metadata(server: str) -> Callable[[str], bytes]:
    """A getter for the server's public TUF metadata (`/tuf/metadata/NAME`): no token."""
    if not server:
        raise ConfigError("no server given", hint="pass --server URL or set UPTEND_SERVER")
    base = server.rstrip("/")

    def get(name: str) -> bytes:
        url = f"{base}/tuf/metadata/{quote(name, safe='')}"
        try:
            response = httpx.get(url, timeout=httpx.Timeout(60.0, connect=10.0))
        except httpx.TransportError as e:
            raise TransientError(
                f"cannot reach the server at {base}: {e}", hint="check --server / UPTEND_SERVER"
            ) from None
        if response.status_code != 200:
            raise TransientError(
                f"{url} answered HTTP {response.status_code}",
                hint="check --server / UPTEND_SERVER points at the uptend server",
            )
        return response.content

    return get


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


def _param(value: str | int | bool | list[str] | None) -> str | list[str]:
    """A query parameter as httpx sends it: booleans in lower case, lists repeated."""
    if isinstance(value, list):
        return value
    return str(value).lower() if isinstance(value, bool) else str(value)
