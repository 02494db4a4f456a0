"""The schedule over real HTTP, on SQLite and PostgreSQL: windows, the freeze, critical releases.

What the CLI stores and shows, what a check-in is told (held or not, until when), that an
"unchanged" answer never outlives a window opening, and the fleet view's reason codes.
The freeze is fleet-wide: the tests that set one clear it before they end.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.server.test_checkin import answer
from tests.support.fleet import Fleet, make_release
from tests.support.servers import (
    admin_client,
    agents,
    app_of,
    check_in,
    enrolled,
    running,
    upload,
)
from tests.support.windows import open_now, shut_now


def group_on(fleet: Fleet, group: str, app: str, *windows: str) -> None:
    with admin_client(fleet) as http:
        body: dict[str, Any] = {"app": app, "windows": list(windows)}
        http.put(f"/api/v1/groups/{group}", json=body).raise_for_status()


@pytest.fixture
def freeze_cleared(server: Fleet) -> Iterator[None]:
    yield
    server.cli("freeze", "clear")


def test_group_windows_are_stored_canonical_listed_and_cleared(server: Fleet) -> None:
    group = server.json(
        "group", "set", "sched-win", "--app", "winapp",
        "--window", "sat,sun 02:00-05:00 Europe/Berlin", "--window", "Mon-Fri 23:00-01:00",
    )  # fmt: skip
    assert group["windows"] == ["Sat,Sun 02:00-05:00 Europe/Berlin", "Mon-Fri 23:00-01:00 UTC"]
    listed = {g["name"]: g for g in server.json("group", "list")}
    assert listed["sched-win"]["windows"] == group["windows"]
    human = server.cli("group", "list").stdout
    assert "Sat,Sun" in human  # (rich wraps the cell to the width of the terminal)
    again = server.json("group", "set", "sched-win", "--poll-interval", "30")
    assert again["windows"] == group["windows"]  # not named: left as they are
    cleared = server.json("group", "set", "sched-win", "--clear-windows")
    assert cleared["windows"] == []


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("Sa 02:00-05:00", "unknown day 'Sa'"),
        ("Sat 2:00-05:00", "bad time '2:00'"),
        ("Sat 02:00-05:00 Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_a_bad_window_is_refused_by_the_cli_and_the_api(
    server: Fleet, spec: str, words: str
) -> None:
    done = server.cli("group", "set", "sched-bad", "--window", spec, check=False)
    assert done.returncode == 2
    assert words in done.stderr
    assert "hint:" in done.stderr
    with admin_client(server) as http:
        response = http.put("/api/v1/groups/sched-bad", json={"windows": [spec]})
    assert response.status_code == 422, response.text  # ConfigError's status
    assert words in response.json()["message"]
    both = server.cli(
        "group", "set", "sched-bad", "--window", "Sat 01:00-02:00", "--clear-windows", check=False
    )
    assert both.returncode == 2
    assert "contradict" in both.stderr


def test_a_check_in_outside_the_window_is_held_and_told_when_to_look_again(
    server: Fleet,
) -> None:
    group_on(server, "sched-shut", "shutapp", shut_now())
    upload(server, "shutapp", "1.0")
    credential = enrolled(server, "sched-shut-1", group="sched-shut")
    first = answer(check_in(server, credential, []))
    [d] = first["apps"]
    assert (d["version"], d["hold"], d["critical"]) == ("1.0", "outside_window", False)
    assert d["reason"].startswith("outside maintenance window (next: ")
    next_at = datetime.fromisoformat(d["hold_until"])
    assert timedelta(hours=2) < next_at - datetime.now(UTC) < timedelta(hours=3)
    assert datetime.fromisoformat(first["valid_until"]) == next_at
    state = [{"app": "shutapp", "state": "pending"}]
    answer(check_in(server, credential, state))  # recorded
    kept = {"generation": first["generation"], "valid_until": first["valid_until"]}
    assert answer(check_in(server, credential, state, **kept))["unchanged"] is True
    # Once the agent's directives have outlived their valid_until, the answer is in full.
    past = {**kept, "valid_until": (datetime.now(UTC) - timedelta(seconds=1)).isoformat()}
    full = answer(check_in(server, credential, state, **past))
    assert full["unchanged"] is False
    assert full["apps"][0]["hold"] == "outside_window"


def test_opening_the_window_bumps_the_generation_and_lifts_the_hold(server: Fleet) -> None:
    group_on(server, "sched-open", "openapp", shut_now())
    upload(server, "openapp", "1.0")
    credential = enrolled(server, "sched-open-1", group="sched-open")
    held = answer(check_in(server, credential, []))
    assert held["apps"][0]["hold"] == "outside_window"
    group_on(server, "sched-open", "openapp", open_now())
    go = answer(check_in(server, credential, [], generation=held["generation"]))
    assert go["generation"] > held["generation"]
    [d] = go["apps"]
    assert (d["hold"], d["hold_until"]) == (None, None)
    closes = datetime.fromisoformat(go["valid_until"])  # the window's close: look again then
    assert timedelta(hours=1) < closes - datetime.now(UTC) <= timedelta(hours=2)


def test_freeze_set_show_clear(server: Fleet, freeze_cleared: None) -> None:
    assert server.json("freeze", "show") is None
    assert "no freeze" in server.cli("freeze", "show").stdout
    until = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    view = server.json("freeze", "set", "--until", until.isoformat(), "--reason", "audit week")
    assert (view["active"], view["reason"], view["start"]) == (True, "audit week", None)
    assert datetime.fromisoformat(view["until"]) == until
    assert server.json("freeze", "show") == view
    human = server.cli("freeze", "show").stdout
    assert "freeze in force" in human
    assert "audit week" in human
    later = server.json("freeze", "set", "--from", "+2h", "--until", "+3h")
    assert later["active"] is False  # not yet
    server.cli("freeze", "clear")
    assert server.json("freeze", "show") is None
    server.cli("freeze", "clear")  # nothing to clear: fine


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--until", "2001-01-01T00:00Z"], "is not in the future"),
        (["--until", "2099-01-01T00:00"], "has no time zone"),
        (["--until", "tomorrow"], "'tomorrow' is not a time"),
        (["--from", "+3h", "--until", "+2h"], "is not before --until"),
        (["--until", "+2h", "--reason", "a\x1bb"], "control characters"),
    ],
)
def test_a_bad_freeze_is_refused_and_sets_nothing(
    server: Fleet, args: list[str], words: str
) -> None:
    done = server.cli("freeze", "set", *args, check=False)
    assert done.returncode == 2, done.stderr
    assert words in done.stderr
    assert server.json("freeze", "show") is None


def test_a_freeze_holds_installs_and_a_critical_release_passes_it(
    server: Fleet, freeze_cleared: None
) -> None:
    group_on(server, "sched-frz", "frzapp", shut_now())
    upload(server, "frzapp", "1.0")
    credential = enrolled(server, "sched-frz-1", group="sched-frz")
    state = [running("frzapp", "1.0")]
    server.cli("freeze", "set", "--until", "+1d", "--reason", "change freeze")
    upload(server, "frzapp", "2.0")
    [d] = answer(check_in(server, credential, state))["apps"]
    assert (d["version"], d["hold"]) == ("2.0", "frozen")
    assert d["reason"].endswith("change freeze")
    app = app_of(agents(server)["sched-frz-1"], "frzapp")
    assert app["reason"]["code"] == "frozen"
    assert app["reason"]["message"].endswith(": change freeze")
    assert datetime.fromisoformat(app["reason"]["until"]) > datetime.now(UTC)

    release = _publish_critical(server, "frzapp", "2.0.1")
    assert release["critical"] is True
    [d] = answer(check_in(server, credential, state))["apps"]
    assert (d["version"], d["hold"], d["critical"]) == ("2.0.1", None, True)
    app = app_of(agents(server)["sched-frz-1"], "frzapp")
    assert (app["reason"]["code"], app["critical"]) == ("update_pending", True)
    listed = {r["version"]: r for r in server.json("release", "list", "frzapp")}
    assert (listed["2.0"]["critical"], listed["2.0.1"]["critical"]) == (False, True)
    assert "2.0.1 (critical)" in server.cli("release", "list", "frzapp").stdout


def _publish_critical(server: Fleet, app: str, version: str) -> dict[str, Any]:
    src = make_release(server.root / "releases", version)
    published: dict[str, Any] = server.json(
        "release", "publish", app, version, str(src), "--critical"
    )
    return published


def test_the_fleet_view_names_what_really_holds_each_host(server: Fleet) -> None:
    group_on(server, "sched-fv", "fvapp", shut_now())
    upload(server, "fvapp", "1.0")
    upload(server, "fvapp", "2.0")
    behind = enrolled(server, "sched-fv-behind", group="sched-fv")
    staged = enrolled(server, "sched-fv-staged", group="sched-fv")
    current = enrolled(server, "sched-fv-current", group="sched-fv")
    check_in(server, behind, [running("fvapp", "1.0")])
    deferral = "deferred: outside maintenance window (next: soon)"
    says = [{"app": "fvapp", "version": "1.0", "state": "deferred", "target": "2.0",
             "reason": deferral}]  # fmt: skip
    check_in(server, staged, says)
    check_in(server, current, [running("fvapp", "2.0")])
    view = agents(server)
    codes = {n: app_of(view[n], "fvapp")["reason"] for n in view if n.startswith("sched-fv-")}
    assert {n: r["code"] for n, r in codes.items()} == {
        "sched-fv-behind": "outside_window",
        "sched-fv-staged": "outside_window",
        "sched-fv-current": "up_to_date",
    }
    window = codes["sched-fv-behind"]
    assert window["group"] == "sched-fv"
    assert window["message"] == f"outside maintenance window (next: {_utc(window['next'])})"
    with admin_client(server) as http:
        shut = http.get("/api/v1/agents", params={"reason": "outside_window", "group": "sched-fv"})
        assert shut.json()["total"] == 2
        summary = http.get("/api/v1/fleet/summary").json()
    [fv] = [a for a in summary["apps"] if a["app"] == "fvapp"]
    assert fv["reasons"] == {"outside_window": 2, "up_to_date": 1}

    group_on(server, "sched-fv", "fvapp", open_now())  # the window opens: nothing holds them
    view = agents(server)
    assert {n: app_of(view[n], "fvapp")["reason"]["code"] for n in codes} == {
        "sched-fv-behind": "update_pending",
        "sched-fv-staged": "update_pending",  # its deferral was the window's: no longer true
        "sched-fv-current": "up_to_date",
    }


def _utc(iso: str) -> str:
    return f"{datetime.fromisoformat(iso).astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
