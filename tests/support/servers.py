"""One real `uptend server` per dialect, shared by a module, and the HTTP helpers its tests use.

Tests on a shared server keep to their own agent, group and app names (see
tests/server/test_agent_api.py); `dialect_server` is what tests/server/conftest.py's `server`
fixture yields, so each module gets its own pair of servers, not one per test.
"""

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fleet import Fleet, make_release
from tests.support.pg import fresh_database
from uptend import archive

DIALECTS = ["sqlite", "postgresql"]


@contextlib.contextmanager
def fleet_on(dialect: str, root: Path) -> Iterator[Fleet]:
    """A running Fleet on SQLite, or on a fresh PostgreSQL database dropped afterwards.

    The same as conftest's `any_db_fleet`, but usable from a module-scoped fixture.
    """
    if dialect == "sqlite":
        with Fleet(root) as fleet:
            yield fleet
        return
    with fresh_database() as url, Fleet(root, database_url=url) as fleet:
        yield fleet


@contextlib.contextmanager
def dialect_server(
    request: pytest.FixtureRequest, factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    """The server of a fixture parametrized over `DIALECTS`, in a fresh temporary dir."""
    with fleet_on(request.param, factory.mktemp("fleet")) as fleet:
        yield fleet


def admin_client(fleet: Fleet, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {fleet.admin_token if token is None else token}"}
    return httpx.Client(base_url=fleet.url, headers=headers, timeout=30)


def upload(fleet: Fleet, app: str, version: str, channel: str = "stable") -> dict[str, Any]:
    """Publish a release straight through the admin API (quicker than the CLI, for setup)."""
    where = fleet.root / "releases"
    bundle = where / f"{app}-{version}.tar.gz"
    archive.pack_dir(make_release(where, version), bundle)
    with admin_client(fleet) as http:
        params = {"app": app, "version": version, "channel": channel}
        response = http.post("/api/v1/releases", params=params, content=bundle.read_bytes())
    assert response.status_code == 201, response.text
    release: dict[str, Any] = response.json()
    return release


def enroll(
    fleet: Fleet, name: str, *, group: str = "default", token: str | None = None
) -> httpx.Response:
    body = {"token": fleet.enroll_token if token is None else token, "name": name, "group": group}
    return httpx.post(f"{fleet.url}/api/v1/enroll", json=body, timeout=30)


def enrolled(fleet: Fleet, name: str, *, group: str = "default") -> str:
    """Enroll agent `name` and return its credential."""
    response = enroll(fleet, name, group=group)
    assert response.status_code == 200, response.text
    credential: str = response.json()["credential"]
    return credential


def check_in(
    fleet: Fleet, credential: str, apps: list[dict[str, Any]], **extra: Any
) -> httpx.Response:
    body = {"agent_version": "0.1.0", "apps": apps, **extra}
    headers = {"Authorization": f"Bearer {credential}"}
    return httpx.post(f"{fleet.url}/api/v1/checkin", json=body, headers=headers, timeout=30)


def running(app: str, version: str) -> dict[str, Any]:
    return {"app": app, "version": version, "state": "running"}


def directives(fleet: Fleet, credential: str, apps: list[dict[str, Any]]) -> dict[str, Any]:
    """Check in and return the directive per app."""
    response = check_in(fleet, credential, apps)
    assert response.status_code == 200, response.text
    by_app: dict[str, Any] = {d["app"]: d for d in response.json()["apps"]}
    return by_app


def agents(fleet: Fleet, *, outdated: bool = False) -> dict[str, dict[str, Any]]:
    """The fleet view from the admin API, by agent name."""
    with admin_client(fleet) as http:
        params: dict[str, str | int] = {"outdated": str(outdated).lower(), "limit": 1000}
        response = http.get("/api/v1/agents", params=params)
    assert response.status_code == 200, response.text
    by_name: dict[str, dict[str, Any]] = {a["name"]: a for a in response.json()["agents"]}
    return by_name


def app_of(agent: dict[str, Any], app: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [a for a in agent["apps"] if a["app"] == app]
    assert len(found) == 1, agent
    return found[0]


__all__ = [
    "DIALECTS",
    "admin_client",
    "agents",
    "app_of",
    "check_in",
    "dialect_server",
    "directives",
    "enroll",
    "enrolled",
    "fleet_on",
    "running",
    "upload",
]
