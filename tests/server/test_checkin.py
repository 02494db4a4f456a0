"""The check-in path over real HTTP: what it writes (counted), what it answers, last-seen.

Writes are counted by the server's own statement counters (GET /api/v1/server/stats), not
assumed. Tests share one real server per dialect and keep to their own agents and groups.
"""

import signal
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.support.fleet import UPTEND, Fleet, wait_until
from tests.support.servers import (
    admin_client,
    check_in,
    enrolled,
    fleet_on,
    running,
    upload,
)
from uptend.agent.control import ControlClient
from uptend.agent.wire import AppStatus, CheckIn, Directives
from uptend.server.storage.db import sqlite_url


def stats(url: str, token: str) -> dict[str, Any]:
    response = httpx.get(
        f"{url}/api/v1/server/stats", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def query(fleet: Fleet, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = create_engine(fleet.database_url or sqlite_url(fleet.server_dir))
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def answer(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def group_with_release(fleet: Fleet, group: str, app: str, version: str = "1.0") -> None:
    with admin_client(fleet) as http:
        http.put(f"/api/v1/groups/{group}", json={"app": app}).raise_for_status()
    upload(fleet, app, version)


def test_an_idle_check_in_writes_nothing_and_answers_unchanged(server: Fleet) -> None:
    group_with_release(server, "idle", "idle-app")
    credential = enrolled(server, "idle-1", group="idle")
    state = [running("idle-app", "1.0")]
    first = answer(check_in(server, credential, state))  # recorded: a first sighting
    assert first["unchanged"] is False
    [directive] = first["apps"]
    assert (directive["version"], directive["target"]) == (
        "1.0",
        "idle-app/1.0/idle-app-1.0.tar.gz",
    )

    before = stats(server.url, server.admin_token)
    for _ in range(5):
        idle = check_in(server, credential, state, generation=first["generation"])
        assert answer(idle) == {
            "poll_interval_s": first["poll_interval_s"],
            "apps": [],
            "retry": [],
            "generation": first["generation"],
            "unchanged": True,
            "commands": [],
        }
        assert len(idle.content) < 100  # a few bytes, whatever the number of apps
    # an old agent (no generation) gets the full answer, and still nothing is written
    old = answer(check_in(server, credential, state))
    assert old["unchanged"] is False
    assert old["apps"] == first["apps"]
    after = stats(server.url, server.admin_token)
    assert after["statements"]["write"] == before["statements"]["write"]
    assert after["checkins"]["recorded"] == before["checkins"]["recorded"]
    assert after["checkins"]["unchanged"] - before["checkins"]["unchanged"] == 5
    # reads: at most the generation per check-in (credentials and the plan are remembered)
    assert after["statements"]["read"] - before["statements"]["read"] <= 6 + 1  # + stats' own


def test_a_state_change_is_recorded_with_one_write_and_a_full_answer(server: Fleet) -> None:
    group_with_release(server, "moving", "moving-app")
    credential = enrolled(server, "moving-1", group="moving")
    generation = answer(check_in(server, credential, [running("moving-app", "0.9")]))["generation"]

    before = stats(server.url, server.admin_token)
    updating = {"app": "moving-app", "version": "0.9", "state": "updating", "target": "1.0"}
    changed = answer(check_in(server, credential, [updating], generation=generation))
    assert changed["unchanged"] is False  # the state moved: the agent gets its directives again
    assert changed["apps"][0]["version"] == "1.0"
    after = stats(server.url, server.admin_token)
    assert after["statements"]["write"] - before["statements"]["write"] == 1
    rows = query(
        server,
        "SELECT installed, state, target FROM agent_apps a JOIN agents g ON g.id = a.agent_id"
        " WHERE g.name = 'moving-1'",
    )
    assert rows == [("0.9", "updating", "1.0")]

    # a new agent version is recorded too, and the same state again writes nothing
    newer = {"agent_version": "0.2.0", "apps": [updating], "generation": generation}
    headers = {"Authorization": f"Bearer {credential}"}
    answer(httpx.post(f"{server.url}/api/v1/checkin", json=newer, headers=headers, timeout=30))
    assert query(server, "SELECT agent_version FROM agents WHERE name = 'moving-1'") == [("0.2.0",)]
    writes = stats(server.url, server.admin_token)["statements"]["write"]
    again = httpx.post(f"{server.url}/api/v1/checkin", json=newer, headers=headers, timeout=30)
    assert answer(again)["unchanged"] is True
    assert stats(server.url, server.admin_token)["statements"]["write"] == writes


def test_a_retry_is_delivered_once_then_cleared(server: Fleet) -> None:
    group_with_release(server, "retrying", "retry-app")
    credential = enrolled(server, "retry-1", group="retrying")
    failed = {**running("retry-app", "0.9"), "state": "failed", "reason": "1.0 failed"}
    generation = answer(check_in(server, credential, [failed]))["generation"]
    server.cli("fleet", "retry", "retry-1", "retry-app")
    delivered = answer(check_in(server, credential, [failed], generation=generation))
    assert delivered["retry"] == ["retry-app"]
    assert delivered["generation"] > generation
    assert query(server, "SELECT retry FROM agent_apps WHERE app = 'retry-app'") == [(False,)]
    later = answer(check_in(server, credential, [failed], generation=delivered["generation"]))
    assert later["unchanged"] is True
    assert later["retry"] == []


def test_the_control_client_keeps_its_directives_while_nothing_changes(
    server: Fleet, request: pytest.FixtureRequest
) -> None:
    group_with_release(server, "client", "client-app")
    credential = enrolled(server, "client-1", group="client")
    control = ControlClient(server.url, credential)
    request.addfinalizer(control.close)
    body = CheckIn(agent_version="0.1.0", apps=[AppStatus(app="client-app", version="1.0")])
    first = control.checkin(body, None)
    assert isinstance(first, Directives)
    assert not first.unchanged
    assert first.apps[0].version == "1.0"
    assert control.checkin(body, first) is first  # unchanged: the very same directives
    upload(server, "client-app", "2.0")
    moved = control.checkin(body, first)
    assert moved is not first
    assert (moved.apps[0].version, moved.apps[0].target) == (
        "2.0",
        "client-app/2.0/client-app-2.0.tar.gz",
    )
    assert moved.generation is not None
    assert first.generation is not None
    assert moved.generation > first.generation
    # the old post() still works (what runner.py calls until it moves to checkin())
    assert control.post("api/v1/checkin", body, Directives).apps == moved.apps


def test_server_stats_need_the_admin_token(server: Fleet) -> None:
    credential = enrolled(server, "stats-snoop")
    for token in (credential, "uta_wrong", server.enroll_token):
        response = httpx.get(
            f"{server.url}/api/v1/server/stats",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert response.status_code == 401, response.text


def test_the_server_keeps_its_start_up_heap_out_of_garbage_collections(server: Fleet) -> None:
    """Frozen: a full collection would otherwise walk it while every request waits."""
    assert stats(server.url, server.admin_token)["gc"]["frozen"] > 10_000


# --- last seen ----------------------------------------------------------------------------------


def last_seen(fleet: Fleet, name: str) -> datetime | None:
    [(value,)] = query(fleet, "SELECT last_seen FROM agents WHERE name = :name", name=name)
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def test_last_seen_is_written_at_once_first_then_within_the_flush_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPTEND_LASTSEEN_FLUSH_S", "1")
    with Fleet(tmp_path) as fleet:
        credential = enrolled(fleet, "seen-1")
        assert last_seen(fleet, "seen-1") is None
        answer(check_in(fleet, credential, []))
        first = last_seen(fleet, "seen-1")
        assert first is not None  # "never checked in" ends with the first check-in, not later
        writes = stats(fleet.url, fleet.admin_token)["statements"]["write"]
        answer(check_in(fleet, credential, []))
        # the bound documented in README: at most one interval (plus one flush) stale
        wait_until(lambda: last_seen(fleet, "seen-1") != first, timeout_s=10, what="a flush")
        after = stats(fleet.url, fleet.admin_token)
        assert after["statements"]["write"] == writes  # the check-in itself wrote nothing
        assert after["lastseen"]["flushes"] >= 1


def test_last_seen_is_flushed_at_shutdown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPTEND_LASTSEEN_FLUSH_S", "3600")  # no periodic flush in this test
    fleet = Fleet(tmp_path)
    fleet.start_server()
    try:
        credential = enrolled(fleet, "seen-2")
        answer(check_in(fleet, credential, []))
        first = last_seen(fleet, "seen-2")
        answer(check_in(fleet, credential, []))
        assert stats(fleet.url, fleet.admin_token)["lastseen"]["pending"] == 1
        assert last_seen(fleet, "seen-2") == first  # held in memory ...
    finally:
        fleet.stop_server()  # SIGTERM, as systemd stops it
    final = last_seen(fleet, "seen-2")
    assert first is not None
    assert final is not None
    assert final > first  # ... and written on the way out


# --- replicas on one PostgreSQL ------------------------------------------------------------------


class Replica:
    """A second `uptend server run` on the same data dir (and so the same database)."""

    def __init__(self, fleet: Fleet) -> None:
        with (fleet.root / "replica.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [*UPTEND, "server", "run", str(fleet.server_dir), "--port", "0"],
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        assert line.startswith("listening on "), line
        self.url = line.removeprefix("listening on ")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)  # uvicorn re-raises SIGTERM after its graceful shutdown
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def test_a_change_on_one_replica_reaches_the_next_check_in_on_another(tmp_path: Path) -> None:
    with fleet_on("postgresql", tmp_path) as fleet:
        group_with_release(fleet, "replicated", "rep-app")
        credential = enrolled(fleet, "rep-1", group="replicated")
        replica = Replica(fleet)
        try:
            headers = {"Authorization": f"Bearer {credential}"}
            body: dict[str, Any] = {"agent_version": "0.1.0", "apps": [running("rep-app", "1.0")]}

            def on_replica() -> dict[str, Any]:
                return answer(
                    httpx.post(f"{replica.url}/api/v1/checkin", json=body, headers=headers)
                )

            first = on_replica()
            body["generation"] = first["generation"]
            assert on_replica()["unchanged"] is True  # the replica remembers it all now

            upload(fleet, "rep-app", "2.0")  # through the first server
            published = on_replica()
            assert published["unchanged"] is False
            assert published["apps"][0]["version"] == "2.0"

            body["generation"] = published["generation"]
            assert on_replica()["unchanged"] is True
            with admin_client(fleet) as http:
                change = {"poll_interval_s": 7, "auto_update": False}
                http.put("/api/v1/groups/replicated", json=change).raise_for_status()
            regrouped = on_replica()
            assert regrouped["poll_interval_s"] == 7
            assert regrouped["apps"][0]["version"] == "1.0"  # auto-update off: stay on 1.0
            assert "automatic updates are off" in regrouped["apps"][0]["reason"]
        finally:
            replica.stop()


def test_an_admin_tokens_last_use_is_not_counted_as_a_check_ins_write(server: Fleet) -> None:
    """The bench reads writes per idle check-in from these counters while admins call in."""
    with admin_client(server) as http:
        created = http.post("/api/v1/tokens", json={"role": "admin", "name": "counted"})
        created.raise_for_status()
    before = stats(server.url, server.admin_token)  # this token's own use: touched by now
    stats(server.url, created.json()["token"])  # a first use: its last_used is written
    after = stats(server.url, server.admin_token)
    assert after["statements"]["token_use"] - before["statements"]["token_use"] == 1
    assert after["statements"]["write"] == before["statements"]["write"]
