"""Signed remote configuration on the server, over real HTTP on SQLite and PostgreSQL.

Each version is stored, signed as a TUF target in the app's delegated role (hash, length,
custom), listed newest first by group, fetched with its content, rolled back as a new
version; a host's directive carries its group's newest config, except a version that host
reported bad; a change bumps the generation and wakes a held long-poll at once.
"""

import concurrent.futures
import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.server.test_agent_api import admin_client, check_in, enrolled, fleet_on, running
from tests.server.test_checkin import answer, group_with_release, stats
from tests.server.test_commands import wait
from tests.support.fleet import Fleet, wait_until


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    with fleet_on(request.param, tmp_path_factory.mktemp("fleet")) as fleet:
        yield fleet


def set_config(fleet: Fleet, app: str, content: str, group: str | None = None) -> dict[str, Any]:
    with admin_client(fleet) as http:
        response = http.post(
            f"/api/v1/apps/{app}/config", json={"content": content, "group": group}
        )
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


def directive(fleet: Fleet, credential: str, app: str, **extra: Any) -> dict[str, Any]:
    got = answer(check_in(fleet, credential, [running(app, "1.0")], **extra))
    [d] = [d for d in got["apps"] if d["app"] == app]
    return d  # type: ignore[no-any-return]


def signed_role(fleet: Fleet, app: str) -> dict[str, Any]:
    """The app's delegated targets role as published (newest version on disk)."""
    meta = fleet.server_dir / "tuf" / "metadata"
    newest = max(meta.glob(f"*.app.{app}.json"), key=lambda p: int(p.name.split(".")[0]))
    return json.loads(newest.read_text())["signed"]  # type: ignore[no-any-return]


def test_a_config_is_signed_in_the_apps_role_and_listed_fetched_and_rolled_back(
    server: Fleet,
) -> None:
    group_with_release(server, "cfg", "cfg-app")
    made = set_config(server, "cfg-app", '{"level": 1}\n')
    assert (made["version"], made["group"], made["target"]) == (1, None, "cfg-app/_config/1")
    assert made["sha256"] == hashlib.sha256(b'{"level": 1}\n').hexdigest()
    assert made["created_by"] == "admin#1"
    target = signed_role(server, "cfg-app")["targets"]["cfg-app/_config/1"]
    assert target["length"] == len(b'{"level": 1}\n')
    assert target["hashes"]["sha256"] == made["sha256"]
    assert target["custom"] == {"app": "cfg-app", "config": 1, "group": None}

    set_config(server, "cfg-app", '{"level": 2}\n', group="cfg")
    with admin_client(server) as http:
        history = http.get("/api/v1/apps/cfg-app/config").json()
        assert [(v["version"], v["group"]) for v in history] == [(2, "cfg"), (1, None)]
        for_default = http.get("/api/v1/apps/cfg-app/config", params={"group": "default"})
        assert [v["version"] for v in for_default.json()] == [1]  # not another group's
        doc = http.get("/api/v1/apps/cfg-app/config/1").json()
        assert doc["content"] == '{"level": 1}\n'
        back = http.post("/api/v1/apps/cfg-app/config/rollback", json={"to": 1})
        assert back.status_code == 201, back.text
        assert (back.json()["version"], back.json()["rollback_of"]) == (3, 1)
        assert http.get("/api/v1/apps/cfg-app/config-current").json()["content"] == (
            '{"level": 1}\n'
        )
        assert http.get("/api/v1/apps/cfg-app/config/9").status_code == 404
        assert http.post("/api/v1/apps/cfg-app/config/rollback", json={"to": 9}).status_code == 404
        missing = http.post("/api/v1/apps/cfg-app/config", json={"content": "x", "group": "nope"})
        assert missing.status_code == 404, missing.text
        big = http.post("/api/v1/apps/cfg-app/config", json={"content": "x" * (65 << 10)})
        assert big.status_code == 422


def test_a_directive_carries_the_groups_newest_config_unless_the_host_reported_it_bad(
    server: Fleet,
) -> None:
    group_with_release(server, "cfd", "cfd-app")
    credential = enrolled(server, "cfd-1", group="cfd")
    first = directive(server, credential, "cfd-app")
    assert first.get("config_version") is None
    set_config(server, "cfd-app", "a = 1\n")
    d = directive(server, credential, "cfd-app")
    assert (d["config_version"], d["config_target"]) == (1, "cfd-app/_config/1")
    set_config(server, "cfd-app", "a = 2\n", group="cfd")
    set_config(server, "cfd-app", "a = 3\n", group="default")  # another group's: not ours
    assert directive(server, credential, "cfd-app")["config_version"] == 2

    bad = {**running("cfd-app", "1.0"), "state": "failed", "reason": "config 2 rolled back: x"}
    got = answer(check_in(server, credential, [{**bad, "config_version": 1, "config_bad": 2}]))
    [d] = got["apps"]
    assert d.get("config_version") is None  # not sent again to this host
    other = enrolled(server, "cfd-2", group="cfd")
    assert directive(server, other, "cfd-app")["config_version"] == 2  # other hosts get it
    set_config(server, "cfd-app", "a = 4\n", group="cfd")
    got = answer(check_in(server, credential, [{**bad, "config_version": 1, "config_bad": 2}]))
    assert got["apps"][0]["config_version"] == 4  # a newer version goes out again


def test_a_config_change_wakes_a_held_long_poll_at_once(server: Fleet) -> None:
    group_with_release(server, "cfw", "cfw-app")
    credential = enrolled(server, "cfw-1", group="cfw")
    generation = answer(check_in(server, credential, [running("cfw-app", "1.0")]))["generation"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        held = pool.submit(wait, server, credential, generation, 30.0)
        wait_until(lambda: stats(server.url, server.admin_token)["held_long_polls"] >= 1)
        set_config(server, "cfw-app", "x\n")
        start = time.monotonic()
        response = held.result(timeout=10)
    assert response.status_code == 200, response.text
    assert response.json() == {"ring": True}
    took = time.monotonic() - start
    assert took < 2.0, f"the held long-poll answered {took:.2f}s after the config change"
    d = directive(server, credential, "cfw-app", generation=generation)
    assert d["config_version"] == 1


def test_config_routes_need_the_admin_token(server: Fleet) -> None:
    response = httpx.get(f"{server.url}/api/v1/apps/demo/config", timeout=10)
    assert response.status_code == 401


def test_the_agents_own_settings_go_to_every_host_of_the_group_apart_from_any_app(
    server: Fleet,
) -> None:
    group_with_release(server, "cfs", "cfs-app")
    credential = enrolled(server, "cfs-1", group="cfs")
    with admin_client(server) as http:  # assigned too: its releases are the agent's own
        http.put("/api/v1/groups/cfs", json={"app": "uptend-agent"}).raise_for_status()
        for content, refused in (
            ('{"poll_interval_s": 0}', "poll_interval_s"),
            ('{"pol_interval_s": 5}', "unknown agent setting 'pol_interval_s'"),
            ('{"server": "ftp://x"}', "not an http:// or https:// URL"),
            ("[1]", "not a JSON object"),
        ):
            response = http.post(
                "/api/v1/apps/uptend-agent/config", json={"content": content, "group": "cfs"}
            )
            assert response.status_code == 422, response.text
            assert refused in response.json()["message"]
    assert (
        answer(check_in(server, credential, [running("cfs-app", "1.0")])).get("settings_version")
        is None
    )  # nothing signed for the refused documents

    made = set_config(server, "uptend-agent", '{"poll_interval_s": 5}', group="cfs")
    assert made["target"] == "uptend-agent/_config/1"
    assert signed_role(server, "uptend-agent")["targets"][made["target"]]["custom"] == {
        "app": "uptend-agent",
        "config": 1,
        "group": "cfs",
    }
    got = answer(check_in(server, credential, [running("cfs-app", "1.0")]))
    assert (got["settings_version"], got["settings_target"]) == (1, "uptend-agent/_config/1")
    [agent_app] = [d for d in got["apps"] if d["app"] == "uptend-agent"]
    assert agent_app.get("config_version") is None  # the settings are not the app's config

    # Reported bad (rolled back, with a report): not sent again, even on an otherwise
    # unchanged check-in; a newer version is
    report = {
        "app": "uptend-agent",
        "version": "0.1.0",
        "outcome": "rolled_back",
        "reason": "agent settings 1 rolled back: no check-in succeeded within 3s with them",
        "at": "2026-01-01T00:00:00+00:00",
    }
    gave_up = {"settings_bad": 1, "generation": got["generation"]}
    later = answer(
        check_in(server, credential, [running("cfs-app", "1.0")], reports=[report], **gave_up)
    )
    assert later.get("settings_version") is None
    again = answer(check_in(server, credential, [running("cfs-app", "1.0")], **gave_up))
    assert again["unchanged"] is False
    assert again.get("settings_version") is None
    with admin_client(server) as http:
        shown = http.get("/api/v1/agents/cfs-1").json()
    assert [(r["app"], r["outcome"]) for r in shown["reports"]] == [("uptend-agent", "rolled_back")]
    set_config(server, "uptend-agent", '{"poll_interval_s": 6}', group="cfs")
    newer = answer(check_in(server, credential, [running("cfs-app", "1.0")], **gave_up))
    assert newer["settings_version"] == 2
