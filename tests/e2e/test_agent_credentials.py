"""An agent's credential revoked, removed and rotated under real agents, on SQLite and PostgreSQL.

A revoked agent is refused at its next check-in and keeps its apps running; a removed one is
gone from the fleet view with its story in the audit log; a rotated one receives a new
credential in a check-in answer, stores it (0600) and uses it, and a kill -9 between
receiving and storing it, or between storing and using it, costs nothing.
"""

import json
import signal
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.server.test_admin_cli import wide
from tests.server.test_agent_api import check_in
from tests.support.fleet import Fleet, Host, wait_until
from uptend.agent.crashpoints import ARM_ENV, CREDENTIAL_CRASHPOINTS
from uptend.server.storage.db import sqlite_url


def credential(host: Host) -> str:
    value: str = json.loads((host.dir / "agent.json").read_text())["credential"]
    return value


def sql(fleet: Fleet, query: str, **params: Any) -> list[Any]:
    engine = create_engine(fleet.database_url or sqlite_url(fleet.server_dir))
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(query), params).all())
    finally:
        engine.dispose()


def rotating(fleet: Fleet, name: str) -> bool:
    [(requested,)] = sql(fleet, "SELECT rotate_requested_at FROM agents WHERE name = :n", n=name)
    return requested is not None


def listed(fleet: Fleet, name: str) -> dict[str, Any] | None:
    return next((a for a in fleet.agents() if a["name"] == name), None)


def running_host(fleet: Fleet, name: str) -> Host:
    fleet.assign("demo", poll=1)
    fleet.publish("demo", "1.0")
    host = fleet.add_host(name)
    host.start()
    wait_until(lambda: host.running_version("demo") == "1.0", what="demo 1.0 to run")
    return host


def test_a_revoked_agent_is_refused_and_keeps_its_apps_running(any_db_fleet: Fleet) -> None:
    fleet = any_db_fleet
    host = running_host(fleet, "revoked-1")
    pid = host.app_says("demo")["pid"]  # type: ignore[index]
    fleet.cli("agent", "revoke", "revoked-1")
    wait_until(lambda: "agent revoked-1 was revoked" in host.log_text(), what="a refused check-in")
    assert host.proc is not None
    assert host.proc.poll() is None  # the agent goes on (backing off), and so does its app
    assert host.running_version("demo") == "1.0"
    assert host.app_says("demo")["pid"] == pid  # type: ignore[index]
    agent = listed(fleet, "revoked-1")
    assert agent is not None
    assert agent["revoked"] is True
    assert "revoked-1 (revoked)" in wide(fleet, "fleet", "list")
    assert check_in(fleet, credential(host), []).status_code == 401
    assert host.stop() == 0


def test_a_removed_agent_is_gone_and_its_story_is_in_the_audit_log(any_db_fleet: Fleet) -> None:
    fleet = any_db_fleet
    host = running_host(fleet, "removed-1")
    agent = listed(fleet, "removed-1")
    assert agent is not None
    fleet.cli("agent", "remove", "removed-1")
    assert listed(fleet, "removed-1") is None
    wait_until(lambda: "agent credential is not valid" in host.log_text(), what="a refusal")
    assert host.running_version("demo") == "1.0"
    rows = sql(fleet, "SELECT action, detail FROM audit ORDER BY id")
    actions = [(action, detail) for action, detail in rows if "removed-1" in detail]
    assert [a for a, _ in actions] == ["agent.enroll", "agent.remove"]
    assert agent["id"] in actions[1][1]
    assert host.stop() == 0


def test_a_rotated_credential_reaches_the_agent_and_the_old_one_dies(any_db_fleet: Fleet) -> None:
    fleet = any_db_fleet
    host = running_host(fleet, "rotated-1")
    old = credential(host)
    done = json.loads(fleet.cli("agent", "rotate-credential", "rotated-1", "--json").stdout)
    assert done["rotating"] is True
    wait_until(lambda: credential(host) != old, what="the agent to store its new credential")
    assert (host.dir / "agent.json").stat().st_mode & 0o777 == 0o600
    # the old one works until the new one is first used, then never again
    wait_until(lambda: not rotating(fleet, "rotated-1"), what="the new one to be used")
    assert check_in(fleet, old, []).status_code == 401
    assert check_in(fleet, credential(host), []).status_code == 200
    assert "stored the new credential" in host.log_text()
    assert "check-in failed" not in host.log_text()
    assert host.running_version("demo") == "1.0"
    assert not json.loads((host.dir / "state" / "directives.json").read_text()).get("credential")
    assert host.stop() == 0


@pytest.mark.parametrize("point", CREDENTIAL_CRASHPOINTS)
def test_kill_9_during_a_rotation_costs_nothing(any_db_fleet: Fleet, point: str) -> None:
    fleet = any_db_fleet
    host = fleet.add_host("crashing-1")
    assert host.start(args=["--once"]).wait(timeout=60) == 0
    old = credential(host)
    fleet.cli("agent", "rotate-credential", "crashing-1")
    killed = host.start(env={ARM_ENV: point}, args=["--once"])
    assert killed.wait(timeout=60) == -signal.SIGKILL
    # killed before the store: the old one is on disk (and still valid); after: the new one
    assert (credential(host) == old) is (point == "credential:received")
    for _ in range(2):  # (gets a new one and stores it,) then uses it
        assert host.start(args=["--once"]).wait(timeout=60) == 0
    new = credential(host)
    assert new != old
    assert not rotating(fleet, "crashing-1")
    assert check_in(fleet, old, []).status_code == 401
    assert check_in(fleet, new, []).status_code == 200
    agent = listed(fleet, "crashing-1")
    assert agent is not None
    assert agent["last_seen"] is not None
