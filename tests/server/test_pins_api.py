"""Pins and floors over real HTTP, on SQLite and PostgreSQL.

What `group set --pin` stores and refuses, what a check-in is told (the pinned release, its
signed target, the `pinned` flag), what a floor does to pins and to the signed metadata, and
the fleet view's reason codes `pinned` and `floor`.
"""

import json
from typing import Any

import httpx
import pytest

from tests.support.fleet import Fleet, make_release
from tests.support.servers import (
    admin_client,
    agents,
    app_of,
    directives,
    enrolled,
    running,
    upload,
)
from uptend.server.tuf_repo.files import file_name


def publish(fleet: Fleet, app: str, version: str, *flags: str) -> dict[str, Any]:
    src = make_release(fleet.root / "releases", version)
    out: dict[str, Any] = fleet.json("release", "publish", app, version, str(src), *flags)
    return out


def by_reason(fleet: Fleet, code: str) -> set[str]:
    page = fleet.json("fleet", "list", "--reason", code, "--limit", "1000")
    return {a["name"] for a in page["agents"]}


def test_pins_are_stored_canonical_listed_and_removed(server: Fleet) -> None:
    for v in ("2.2", "2.3.0", "2.3.1", "2.4"):
        upload(server, "pinlist", v)
    group = server.json("group", "set", "pin-list", "--app", "pinlist", "--pin", "2.3.*")
    assert group["apps"] == [{"app": "pinlist", "channel": "stable", "pin": "2.3.*"}]
    exact = server.json("group", "set", "pin-list", "--app", "pinlist", "--pin", "2.2.0")
    assert exact["apps"][0]["pin"] == "2.2.0"  # its normal form; it names 2.2
    listed = {g["name"]: g for g in server.json("group", "list")}
    assert listed["pin-list"]["apps"][0]["pin"] == "2.2.0"
    assert "2.2.0" in server.cli("group", "list").stdout  # (rich wraps the cell)
    kept = server.json("group", "set", "pin-list", "--app", "pinlist", "--poll-interval", "5")
    assert kept["apps"][0]["pin"] == "2.2.0"  # not named: left as it is
    unpinned = server.json("group", "set", "pin-list", "--app", "pinlist", "--unpin")
    assert unpinned["apps"][0]["pin"] is None


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--app", "pinbad", "--pin", "latest"], 2, "invalid pin 'latest'"),
        (["--app", "pinbad", "--pin", "n-0"], 2, "reaches back 1 to 20"),
        (["--app", "pinbad", "--pin", "9.9"], 3, "no release of pinbad on channel stable"),
        (["--app", "pinbad", "--pin", "n-2"], 3, "matches the pin n-2"),
        (["--app", "pinbad", "--pin", "1.*", "--channel", "beta"], 3, "on channel beta"),
        (["--pin", "1.0"], 2, "a pin is set per app"),
        (["--app", "pinbad", "--pin", "1.0", "--unpin"], 2, "contradict"),
    ],
)
def test_a_bad_pin_or_one_naming_no_release_is_refused(
    server: Fleet, args: list[str], code: int, words: str
) -> None:
    upload(server, "pinbad", "1.0") if not server.json("release", "list", "pinbad") else None
    upload(server, "pinbad", "1.1") if len(server.json("release", "list", "pinbad")) < 2 else None
    done = server.cli("group", "set", "pin-bad", *args, check=False)
    assert done.returncode == code, done.stderr
    assert words in done.stderr
    assert "hint:" in done.stderr
    listed = {g["name"]: g for g in server.json("group", "list")}
    for a in listed.get("pin-bad", {"apps": []})["apps"]:
        assert a["pin"] is None  # nothing was stored


def test_the_api_refuses_a_pin_naming_no_release_with_404(server: Fleet) -> None:
    upload(server, "pinapi", "1.0")
    with admin_client(server) as http:
        response = http.put("/api/v1/groups/pin-api", json={"app": "pinapi", "pin": "7.*"})
        assert response.status_code == 404, response.text
        assert "matches the pin 7.*" in response.json()["message"]
        bad = http.put("/api/v1/groups/pin-api", json={"app": "pinapi", "pin": "x" * 81})
        assert bad.status_code == 422


def test_a_pinned_host_is_sent_down_signed_and_then_shown_pinned(server: Fleet) -> None:
    for v in ("2.2", "2.3", "2.4"):
        upload(server, "pindown", v)
    server.cli("group", "set", "pin-down", "--app", "pindown", "--no-auto-update")
    credential = enrolled(server, "pin-down-1", group="pin-down")
    on_head = directives(server, credential, [running("pindown", "2.4")])["pindown"]
    assert (on_head["version"], on_head["pinned"]) == ("2.4", False)
    server.cli("group", "set", "pin-down", "--app", "pindown", "--pin", "2.2")
    # the pin wins over auto-update off, and lets the agent go down
    d = directives(server, credential, [running("pindown", "2.4")])["pindown"]
    assert (d["version"], d["pinned"], d["target"]) == (
        "2.2",
        True,
        "pindown/2.2/pindown-2.2.tar.gz",
    )
    assert d["reason"] == "pinned to 2.2 (2.2)"
    pending = app_of(agents(server)["pin-down-1"], "pindown")
    assert (pending["desired"], pending["reason"]["code"]) == ("2.2", "update_pending")
    assert pending["reason"]["desired"] == "2.2"
    directives(server, credential, [running("pindown", "2.2")])
    view = app_of(agents(server, outdated=True)["pin-down-1"], "pindown")
    assert (view["installed"], view["desired"], view["newest"]) == ("2.2", "2.2", "2.4")
    assert view["reason"] == {
        "code": "pinned", "message": "pinned to 2.2 (2.2)", "group": "pin-down", "pin": "2.2",
        "version": "2.2",
    }  # fmt: skip
    assert "pin-down-1" in by_reason(server, "pinned")
    summary = {a["app"]: a for a in server.json("fleet", "summary")["apps"]}["pindown"]
    assert summary["reasons"] == {"pinned": 1}
    assert summary["on_desired"] == 1
    server.cli("group", "set", "pin-down", "--app", "pindown", "--unpin")
    back = directives(server, credential, [running("pindown", "2.2")])["pindown"]
    assert (back["version"], back["pinned"]) == ("2.2", False)  # auto-update off again: stays


def test_a_prefix_and_n_minus_1_follow_new_releases(server: Fleet) -> None:
    for v in ("1.0", "1.1", "2.0"):
        upload(server, "pinnext", v)
    server.cli("group", "set", "pin-next", "--app", "pinnext", "--pin", "n-1")
    credential = enrolled(server, "pin-next-1", group="pin-next")
    assert directives(server, credential, [])["pinnext"]["version"] == "1.1"
    upload(server, "pinnext", "2.1")
    assert directives(server, credential, [])["pinnext"]["version"] == "2.0"
    server.cli("group", "set", "pin-next", "--app", "pinnext", "--pin", "1.*")
    assert directives(server, credential, [])["pinnext"]["version"] == "1.1"
    upload(server, "pinnext", "1.2")  # a fix on the old line
    d = directives(server, credential, [])["pinnext"]
    assert (d["version"], d["target"]) == ("1.2", "pinnext/1.2/pinnext-1.2.tar.gz")


def app_role(server: Fleet, app: str) -> dict[str, Any]:
    """The app's signed role as the server publishes it (through timestamp and snapshot)."""

    def get(name: str) -> dict[str, Any]:
        response = httpx.get(f"{server.url}/tuf/metadata/{name}", timeout=30)
        response.raise_for_status()
        body: dict[str, Any] = json.loads(response.content)
        return body

    ts = get("timestamp.json")["signed"]
    snapshot = get(file_name("snapshot", ts["meta"]["snapshot.json"]["version"]))["signed"]
    version = snapshot["meta"][f"app.{app}.json"]["version"]
    role: dict[str, Any] = get(file_name(f"app.{app}", version))["signed"]
    return role


def test_a_floor_is_signed_on_every_lower_release_and_beats_every_pin(server: Fleet) -> None:
    for v in ("1.0", "1.1"):
        upload(server, "floorapp", v)
    server.cli("group", "set", "floor-g", "--app", "floorapp", "--pin", "1.0")
    credential = enrolled(server, "floor-g-1", group="floor-g")
    assert (
        directives(server, credential, [running("floorapp", "1.1")])["floorapp"]["version"] == "1.0"
    )
    released = publish(server, "floorapp", "2.0", "--floor")
    assert (released["floor"], released["critical"]) == (True, False)
    publish(server, "floorapp", "2.1")
    targets = app_role(server, "floorapp")["targets"]
    floors = {path.split("/")[1]: t["custom"].get("floor") for path, t in targets.items()}
    assert floors == {"1.0": "2.0", "1.1": "2.0", "2.0": "2.0", "2.1": None}
    # the later floor lifts the pin to the lowest release it allows, and says why
    d = directives(server, credential, [running("floorapp", "1.0")])["floorapp"]
    assert (d["version"], d["pinned"], d["target"]) == (
        "2.0",
        True,
        "floorapp/2.0/floorapp-2.0.tar.gz",
    )
    assert "below the floor 2.0 published since: held at 2.0" in d["reason"]
    directives(server, credential, [running("floorapp", "2.0")])
    view = app_of(agents(server)["floor-g-1"], "floorapp")
    assert view["reason"]["code"] == "floor"
    assert (view["reason"]["floor"], view["reason"]["pin"]) == ("2.0", "1.0")
    assert view["reason"]["version"] == "2.0"
    assert "floor-g-1" in by_reason(server, "floor")
    # a pin below the floor is refused when it is set; so is a release below it
    done = server.cli("group", "set", "floor-g", "--app", "floorapp", "--pin", "1.1", check=False)
    assert done.returncode == 2
    assert "below its floor 2.0" in done.stderr
    src = make_release(server.root / "releases", "1.5")
    low = server.cli("release", "publish", "floorapp", "1.5", str(src), check=False)
    assert low.returncode == 2
    assert "below the floor 2.0" in low.stderr
    assert [r["floor"] for r in server.json("release", "list", "floorapp")] == [
        False, False, True, False,
    ]  # fmt: skip
    assert "(floor)" in server.cli("release", "list", "floorapp").stdout


def test_a_channel_whose_newest_is_below_the_floor_directs_nothing_new(server: Fleet) -> None:
    upload(server, "floorch", "1.0", channel="beta")
    publish(server, "floorch", "2.0", "--floor")  # on stable
    server.cli("group", "set", "floor-ch", "--app", "floorch", "--channel", "beta")
    credential = enrolled(server, "floor-ch-1", group="floor-ch")
    d = directives(server, credential, [])["floorch"]
    assert (d["version"], d["target"]) == (None, None)
    assert d["reason"] == "the newest release on the channel, 1.0, is below the floor 2.0"
    directives(server, credential, [{"app": "floorch", "version": None, "state": "pending"}])
    view = app_of(agents(server, outdated=True)["floor-ch-1"], "floorch")
    assert view["reason"]["code"] == "floor"
    assert view["reason"]["version"] is None
