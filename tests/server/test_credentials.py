"""Credentials with a life cycle, against real servers on SQLite and PostgreSQL.

Tokens made, listed (never their secret) and revoked through the CLI; enrollment tokens bound
to a group, used up, expired; admin tokens expired and revoked on every server process sharing
the database; failed authentications and enrollments rate-limited per source address (the
tests connect from 127.0.0.2 and 127.0.0.3 too: the whole of 127/8 is loopback) and per
token id; agent names that look like ids refused; lookups by name and by id kept apart.
"""

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.test_admin_cli import assert_fails
from tests.server.test_agent_api import admin_client, enroll, enrolled, fleet_on
from tests.support.fleet import UPTEND, Fleet, wait_until
from uptend.cli.token import parse_duration
from uptend.errors import ConfigError


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    with fleet_on(request.param, tmp_path_factory.mktemp("fleet")) as fleet:
        fleet.cli("group", "set", "web", "--app", "demo")
        yield fleet


def token_cli(fleet: Fleet, *args: str, token: str | None = None) -> Any:
    env = {**fleet.env(), "UPTEND_TOKEN": token or fleet.admin_token}
    done = subprocess.run(
        [*UPTEND, "token", *args, "--json"], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(done.stdout)


def failing(fleet: Fleet, *args: str, token: str) -> subprocess.CompletedProcess[str]:
    env = {**fleet.env(), "UPTEND_TOKEN": token}
    return subprocess.run([*UPTEND, *args], capture_output=True, text=True, env=env, check=False)


def from_address(fleet: Fleet, address: str) -> httpx.Client:
    """A client whose connections come from `address` (any 127.x.y.z reaches 127.0.0.1)."""
    return httpx.Client(
        base_url=fleet.url, transport=httpx.HTTPTransport(local_address=address), timeout=30
    )


def stats(fleet: Fleet) -> dict[str, Any]:
    with admin_client(fleet) as http:
        data: dict[str, Any] = http.get("/api/v1/server/stats").json()["auth"]
    return data


# -- tokens ------------------------------------------------------------------------------------


def test_a_token_is_created_listed_without_its_secret_used_and_revoked(server: Fleet) -> None:
    made = token_cli(server, "create", "--role", "admin", "--name", "ci deploys")
    secret = made["token"]
    assert secret.startswith("uta_")
    assert (made["role"], made["name"], made["state"]) == ("admin", "ci deploys", "live")
    # the new token works for the admin API, and `list` then says when it was last used
    assert server.cli("group", "list").returncode == 0
    token_cli(server, "list", token=secret)
    listed = subprocess.run(
        [*UPTEND, "token", "list", "--json"],
        capture_output=True,
        text=True,
        env={**server.env(), "UPTEND_TOKEN": secret},
        check=True,
    ).stdout
    assert secret not in listed
    assert secret.split("_", 1)[1] not in listed
    mine = {t["id"]: t for t in json.loads(listed)}[made["id"]]
    assert set(mine) == {
        "id", "role", "name", "group", "created_at", "last_used", "uses", "max_uses",
        "expires_at", "revoked", "state",
    }  # fmt: skip
    assert mine["last_used"] is not None
    assert mine["uses"] is None
    first = [t for t in json.loads(listed) if t["name"] == "server init"]
    assert sorted(t["role"] for t in first) == ["admin", "enroll"]  # server init's two

    revoked = token_cli(server, "revoke", str(made["id"]))
    assert (revoked["revoked"], revoked["state"]) == (True, "revoked")
    assert_fails(
        failing(server, "group", "list", token=secret),
        7,
        f"admin token #{made['id']} (ci deploys) was revoked",
        "uptend token create",
    )


def test_the_last_working_admin_token_cannot_be_revoked(server: Fleet) -> None:
    token_cli(server, "create", "--role", "admin")
    for t in token_cli(server, "list"):
        if t["role"] == "admin" and t["state"] == "live" and t["name"] != "server init":
            token_cli(server, "revoke", str(t["id"]))
    [own] = [t for t in token_cli(server, "list") if t["role"] == "admin" and t["state"] == "live"]
    assert_fails(
        server.cli("token", "revoke", str(own["id"]), check=False),
        4,
        "is the last working admin token",
        "uptend token create --role admin",
    )
    assert_fails(server.cli("token", "revoke", "99999", check=False), 3, "token #99999")


def test_an_expired_admin_token_is_refused_with_the_fix(server: Fleet) -> None:
    made = token_cli(server, "create", "--role", "admin", "--expires", "5s")
    with admin_client(server, made["token"]) as http:
        assert http.get("/api/v1/groups").status_code == 200  # and remembered by the server
        wait_until(
            lambda: http.get("/api/v1/groups").status_code == 401,
            what="the admin token to expire",
        )
    assert_fails(
        failing(server, "group", "list", token=made["token"]),
        7,
        f"admin token #{made['id']} expired at",
        "uptend token create --role admin",
    )
    [listed] = [t for t in token_cli(server, "list") if t["id"] == made["id"]]
    assert listed["state"] == "expired"


def test_a_token_made_on_the_server_host_needs_no_admin_token(server: Fleet) -> None:
    done = subprocess.run(
        [
            *UPTEND,
            "token",
            "create",
            "--role",
            "admin",
            "--data-dir",
            str(server.server_dir),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    secret = json.loads(done.stdout)["token"]
    assert failing(server, "group", "list", token=secret).returncode == 0


def test_admin_only_options_and_bad_durations_are_refused(server: Fleet) -> None:
    assert_fails(
        server.cli("token", "create", "--role", "admin", "--max-uses", "3", check=False),
        2,
        "apply to enrollment tokens only",
    )
    assert_fails(
        server.cli("token", "create", "--role", "enroll", "--group", "nope", check=False),
        3,
        "group nope does not exist",
    )
    assert_fails(server.cli("token", "create", "--role", "root", check=False), 2, "unknown role")
    assert_fails(
        server.cli("token", "create", "--role", "enroll", "--expires", "7 days", check=False),
        2,
        "cannot read the duration",
    )


def test_durations() -> None:
    assert parse_duration("90d") == 90 * 86400
    assert parse_duration("1d12h") == 36 * 3600
    assert parse_duration("2w") == 14 * 86400
    assert parse_duration("45s") == 45
    for bad in ("", "10", "d", "1x", "-1d", "1d 2h", "0s"):
        with pytest.raises(ConfigError):
            parse_duration(bad)


# -- enrollment tokens -------------------------------------------------------------------------


def test_an_enroll_token_bound_to_a_group_enrolls_there_until_used_up(server: Fleet) -> None:
    made = token_cli(server, "create", "--role", "enroll", "--group", "web", "--max-uses", "2")
    token = made["token"]
    assert token.startswith("ute_")
    assert token.endswith(server.enroll_token.split(".")[1])
    for name in ("web-a", "web-b"):
        response = enroll(server, name, token=token)
        assert response.status_code == 200, response.text
    with admin_client(server) as http:
        for name in ("web-a", "web-b"):
            agent = http.get(f"/api/v1/agents/{name}").json()["agent"]
            assert agent["group"] == "web"
    used_up = enroll(server, "web-c", token=token)
    assert used_up.status_code == 401
    assert f"enrollment token #{made['id']} is used up (2 of 2" in used_up.json()["message"]
    assert "uptend token create --role enroll" in used_up.json()["hint"]
    [listed] = [t for t in token_cli(server, "list") if t["id"] == made["id"]]
    assert (listed["uses"], listed["max_uses"], listed["state"]) == (2, 2, "used_up")
    # another group than the token's is refused, not silently ignored
    other = token_cli(server, "create", "--role", "enroll", "--group", "web")
    wrong = enroll(server, "web-d", token=other["token"], group="nope")
    assert wrong.status_code == 422
    assert "enrolls into group web" in wrong.json()["message"]


def test_an_expired_or_revoked_enroll_token_is_refused(server: Fleet) -> None:
    short = token_cli(server, "create", "--role", "enroll", "--expires", "1s")

    def state() -> str:
        [listed] = [t for t in token_cli(server, "list") if t["id"] == short["id"]]
        return str(listed["state"])

    wait_until(lambda: state() == "expired", what="the enrollment token to expire")
    late = enroll(server, "late", token=short["token"]).json()
    assert f"enrollment token #{short['id']} expired at" in late["message"]
    gone = token_cli(server, "create", "--role", "enroll")
    token_cli(server, "revoke", str(gone["id"]))
    revoked = enroll(server, "never", token=gone["token"]).json()
    assert f"enrollment token #{gone['id']} was revoked" in revoked["message"]
    with admin_client(server) as http:
        for name in ("late", "never"):
            assert http.get(f"/api/v1/agents/{name}").status_code == 404


# -- names and ids -----------------------------------------------------------------------------


def test_a_name_cannot_look_like_an_id_and_lookups_are_by_name_or_by_id(server: Fleet) -> None:
    enrolled(server, "lookup-me")
    agent_id = server.json("fleet", "show", "lookup-me")["agent"]["id"]
    for name in (agent_id, agent_id.upper(), "0" * 32):
        response = enroll(server, name)
        assert response.status_code == 422, response.text
        assert "has the form of an agent id" in response.json()["message"]
    assert server.json("fleet", "show", "--id", agent_id)["agent"]["name"] == "lookup-me"
    assert_fails(
        server.cli("fleet", "show", agent_id, check=False), 3, "no agent named", "pass --id"
    )
    assert_fails(
        server.cli("fleet", "show", "--id", "lookup-me", check=False), 3, "no agent with id"
    )


def test_a_duplicate_name_points_to_a_command_that_exists(server: Fleet) -> None:
    enrolled(server, "twice")
    again = enroll(server, "twice")
    assert again.status_code == 409
    hint = again.json()["hint"]
    assert "`uptend agent remove twice`" in hint
    command = hint.split("`")[1].split()
    assert server.cli(*command[1:]).returncode == 0  # the hint's own command works
    assert enroll(server, "twice").status_code == 200


# -- every server process sharing the database -------------------------------------------------


@pytest.fixture
def second_server(server: Fleet) -> Iterator[str]:
    """Another `uptend server run` on the same data dir and database."""
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


def test_a_revocation_reaches_every_server_process(server: Fleet, second_server: str) -> None:
    credential = enrolled(server, "two-servers")
    admin = token_cli(server, "create", "--role", "admin")
    headers = {"Authorization": f"Bearer {credential}"}
    body = {"agent_version": "0.1.0", "apps": []}
    with httpx.Client(base_url=second_server, timeout=30) as other:
        assert other.post("/api/v1/checkin", json=body, headers=headers).status_code == 200
        as_admin = {"Authorization": f"Bearer {admin['token']}"}
        assert other.get("/api/v1/groups", headers=as_admin).status_code == 200
        # both are remembered by the second process now; revoke them through the first
        assert server.cli("agent", "revoke", "two-servers").returncode == 0
        token_cli(server, "revoke", str(admin["id"]))
        refused = other.post("/api/v1/checkin", json=body, headers=headers)
        assert refused.status_code == 401
        assert "agent two-servers was revoked" in refused.json()["message"]
        assert other.get("/api/v1/groups", headers=as_admin).status_code == 401


# -- rate limits -------------------------------------------------------------------------------


@pytest.fixture
def limited(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> Iterator[Fleet]:
    """A server allowing 5 failed authentications and 3 enrollments per minute."""
    monkeypatch.setenv("UPTEND_AUTH_FAILURES_PER_MIN", "5")
    monkeypatch.setenv("UPTEND_ENROLLS_PER_MIN", "3")
    with Fleet(tmp_path, database_url=database_url) as fleet:
        yield fleet


def test_failed_authentications_are_limited_per_address(limited: Fleet) -> None:
    good = {"Authorization": f"Bearer {limited.admin_token}"}
    bad = {"Authorization": "Bearer uta_" + "x" * 43}
    with from_address(limited, "127.0.0.1") as http:
        assert http.get("/api/v1/groups", headers=good).status_code == 200
        for _ in range(5):
            assert http.get("/api/v1/groups", headers=bad).status_code == 401
        limited_answer = http.get("/api/v1/groups", headers=bad)
        assert limited_answer.status_code == 429
        assert 1 <= int(limited_answer.headers["Retry-After"]) <= 60
        assert limited_answer.json()["error"] == "RateLimitedError"
        assert "too many failed authentications from 127.0.0.1" in limited_answer.json()["message"]
        # a credential already known to this process is not held up by its neighbours
        assert http.get("/api/v1/groups", headers=good).status_code == 200
        # nor is the address limit anyone else's
    with from_address(limited, "127.0.0.2") as other:
        assert other.get("/api/v1/groups", headers=bad).status_code == 401
    counted = stats(limited)
    assert counted["failures_by_reason"]["unknown"] == 6
    assert counted["rate_limited"] == 1


def test_a_refused_token_is_limited_whatever_its_address(limited: Fleet) -> None:
    credential = enrolled(limited, "to-revoke")
    limited.cli("agent", "revoke", "to-revoke")
    headers = {"Authorization": f"Bearer {credential}"}
    body = {"agent_version": "0.1.0", "apps": []}
    for i in range(5):  # five addresses, one failure each: no address is over its limit
        with from_address(limited, f"127.0.1.{i + 1}") as http:
            assert http.post("/api/v1/checkin", json=body, headers=headers).status_code == 401
    with from_address(limited, "127.0.2.1") as fresh:
        answer = fresh.post("/api/v1/checkin", json=body, headers=headers)
        assert answer.status_code == 429, answer.text
        assert "agent " in answer.json()["message"]  # limited as that agent's credential
        unknown = {"Authorization": "Bearer utc_" + "y" * 43}
        assert fresh.post("/api/v1/checkin", json=body, headers=unknown).status_code == 401
    assert stats(limited)["failures_by_reason"]["revoked"] == 5


def test_enrollment_is_limited_per_address(limited: Fleet) -> None:
    for i in range(3):
        assert enroll(limited, f"e-{i}").status_code == 200
    fourth = enroll(limited, "e-3")
    assert fourth.status_code == 429
    assert int(fourth.headers["Retry-After"]) >= 1
    assert "too many enrollments from 127.0.0.1" in fourth.json()["message"]
    with from_address(limited, "127.0.0.3") as other:
        body = {"token": limited.enroll_token, "name": "e-3", "group": "default"}
        assert other.post("/api/v1/enroll", json=body).status_code == 200
    assert stats(limited)["enroll_rate_limited"] == 1
