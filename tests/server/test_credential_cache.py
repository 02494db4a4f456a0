"""Remembered credentials outlive publishes and group changes, not revocations or rotations.

Credentials are kept under their own counter (bumped only by agent revoke/remove/rotate, a
rotation's completion and token revoke), so a publish does not make every agent's next
check-in read its credential again, and a known credential is never held up by the rate
limiter. Counted by the server's own `credential_lookups` (GET /api/v1/server/stats), on
SQLite and PostgreSQL, with a second `uptend server run` sharing the database.
"""

import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.fleet import UPTEND, Fleet
from tests.support.servers import enrolled, running, upload


@pytest.fixture(scope="module")
def server(server: Fleet) -> Fleet:
    """tests/server/conftest.py's server per dialect, holding group `cache` and cache-app 1.0."""
    assert server.cli("group", "set", "cache", "--app", "cache-app").returncode == 0
    upload(server, "cache-app", "1.0")
    return server


@pytest.fixture(scope="module")
def other(server: Fleet) -> Iterator[str]:
    """Another `uptend server run` on the same data dir and database: its URL."""
    proc = subprocess.Popen(
        [*UPTEND, "server", "run", str(server.server_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    try:
        assert line.startswith("listening on "), line
        yield line.removeprefix("listening on ")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()


def check_in(url: str, credential: str, version: str = "1.0") -> httpx.Response:
    body = {"agent_version": "0.1.0", "apps": [running("cache-app", version)]}
    headers = {"Authorization": f"Bearer {credential}"}
    return httpx.post(f"{url}/api/v1/checkin", json=body, headers=headers, timeout=30)


def version_for(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    [app] = response.json()["apps"]
    version: str = app["version"]
    return version


def lookups(url: str, token: str) -> int:
    """Credentials the process at `url` read from the database (not from memory) so far."""
    headers = {"Authorization": f"Bearer {token}"}
    response = httpx.get(f"{url}/api/v1/server/stats", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    found: int = response.json()["auth"]["credential_lookups"]
    return found


def publish_and_regroup(fleet: Fleet, version: str) -> None:
    """Every kind of change that moves the generation: a publish, a group set."""
    upload(fleet, "cache-app", version)
    done = fleet.cli("group", "set", "cache", "--app", "cache-app", "--poll-interval", "45")
    assert done.returncode == 0, done.stderr


def test_a_publish_and_a_group_change_read_no_credential_again(server: Fleet) -> None:
    credential = enrolled(server, "cache-1", group="cache")
    start = lookups(server.url, server.admin_token)  # the admin token is remembered from here
    assert version_for(check_in(server.url, credential)) == "1.0"
    assert lookups(server.url, server.admin_token) == start + 1  # the agent's first request
    publish_and_regroup(server, "1.1")
    answer = check_in(server.url, credential)
    assert version_for(answer) == "1.1"  # the change is seen ...
    assert answer.json()["poll_interval_s"] == 45
    # ... and neither the agent's credential nor the admin token was read again
    assert lookups(server.url, server.admin_token) == start + 1


def test_a_revocation_is_seen_by_the_next_check_in_on_the_same_process(server: Fleet) -> None:
    credential = enrolled(server, "cache-2", group="cache")
    assert check_in(server.url, credential).status_code == 200
    assert server.cli("agent", "revoke", "cache-2").returncode == 0
    refused = check_in(server.url, credential)
    assert refused.status_code == 401
    assert "agent cache-2 was revoked" in refused.json()["message"]


def test_another_process_keeps_credentials_over_a_publish_and_drops_them_on_a_revoke(
    server: Fleet, other: str
) -> None:
    credential = enrolled(server, "cache-3", group="cache")
    assert check_in(other, credential).status_code == 200  # remembered by the other process
    start = lookups(other, server.admin_token)
    publish_and_regroup(server, "1.2")  # through the first process
    assert version_for(check_in(other, credential)) == "1.2"
    assert lookups(other, server.admin_token) == start  # nothing read again over there
    assert server.cli("agent", "revoke", "cache-3").returncode == 0  # through the first
    refused = check_in(other, credential)
    assert refused.status_code == 401
    assert "agent cache-3 was revoked" in refused.json()["message"]


def test_a_rotation_through_one_process_is_handed_over_and_finished_on_another(
    server: Fleet, other: str
) -> None:
    old = enrolled(server, "cache-4", group="cache")
    assert check_in(other, old).status_code == 200
    assert check_in(server.url, old).status_code == 200  # remembered by both processes
    assert server.cli("agent", "rotate-credential", "cache-4").returncode == 0
    answer: dict[str, Any] = check_in(other, old).json()
    new = answer["credential"]  # the other process learnt that a rotation is due
    assert new
    assert new != old
    assert check_in(other, new).status_code == 200  # first use: the new one is the agent's
    assert check_in(server.url, new).status_code == 200
    assert check_in(server.url, old).status_code == 401  # and the first process forgot the old
