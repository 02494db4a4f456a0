"""Pins, floors and labels end to end against a real server.

Two hundred in-process hosts (tests/support/sim.py) on SQLite and PostgreSQL, enrolled with
labels, follow a pin down and back, and a floor that lifts the pin; real agent processes go
down to a pinned release, and refuse a directive below the floor that a server whose
database was edited sends them, since the release key signed the floor on every lower
release.
"""

import asyncio
import sqlite3
from collections import Counter

from tests.support.fleet import Fleet, make_release, wait_until
from tests.support.sim import SimFleet
from uptend.cli._client import Admin

HOSTS = 200
APP = "pinsapp"


def publish(fleet: Fleet, app: str, version: str, *flags: str) -> None:
    src = make_release(fleet.root / "releases", version)
    fleet.cli("release", "publish", app, version, str(src), *flags)


def reasons(fleet: Fleet) -> dict[str, int]:
    with Admin(fleet.url, fleet.admin_token) as admin:
        (app,) = [a for a in admin.summary().apps if a.app == APP]
        return app.reasons


def test_labelled_hosts_follow_a_pin_down_a_floor_lifts_it_and_unpinning_frees_them(
    any_db_fleet: Fleet,
) -> None:
    fleet = any_db_fleet
    fleet.cli("group", "set", "pins", "--app", APP, "--poll-interval", "60")
    for v in ("1.0", "1.1", "2.0"):
        publish(fleet, APP, v)

    async def scenario() -> None:
        async with SimFleet(fleet.url, fleet.enroll_token) as sims:
            await sims.enroll(HOSTS, group="pins", labels=lambda i: [f"zone=eu-{i % 2}"])
            await sims.rounds_until(APP, "2.0")
            with Admin(fleet.url, fleet.admin_token) as admin:
                eu0 = admin.agents(label=["zone=eu-0"], limit=1000)
                assert eu0.total == HOSTS // 2
                assert {a.labels["zone"] for a in eu0.agents} == {"eu-0"}
                moved = admin.label_agent(eu0.agents[0].name, ["zone=eu-1", "rack=r1"])
                assert moved.labels == {"rack": "r1", "zone": "eu-1"}
                assert admin.agents(label=["zone=eu-0"], limit=1000).total == HOSTS // 2 - 1
                both = admin.agents(label=["zone=eu-1", "rack=r1"], limit=1000)
                assert [a.name for a in both.agents] == [moved.name]
            fleet.cli("group", "set", "pins", "--app", APP, "--pin", "1.1")
            await sims.rounds_until(APP, "1.1")  # a signed downgrade: the directive is pinned
            await sims.round()  # the server hears where they are
            assert reasons(fleet) == {"pinned": HOSTS}
            with Admin(fleet.url, fleet.admin_token) as admin:
                page = admin.agents(outdated=True, reason="pinned", limit=1000)
                assert page.total == HOSTS
                row = page.agents[0].apps[0]
                assert (row.installed, row.desired, row.newest) == ("1.1", "1.1", "2.0")
                assert row.reason.model_dump()["pin"] == "1.1"
            publish(fleet, APP, "2.1")
            await sims.round()
            assert sims.versions(APP) == Counter({"1.1": HOSTS})  # a pin is a pin

            publish(fleet, APP, "3.0", "--floor")  # a floor above the pin lifts it ...
            publish(fleet, APP, "3.1")
            await sims.rounds_until(APP, "3.0")  # ... to the lowest release it allows
            await sims.round()
            assert reasons(fleet) == {"floor": HOSTS}
            with Admin(fleet.url, fleet.admin_token) as admin:
                page = admin.agents(reason="floor", limit=1000)
                assert page.total == HOSTS
                reason = page.agents[0].apps[0].reason.model_dump()
                assert (reason["floor"], reason["pin"], reason["version"]) == ("3.0", "1.1", "3.0")

            fleet.cli("group", "set", "pins", "--app", APP, "--unpin")
            await sims.rounds_until(APP, "3.1")
            await sims.round()
            assert reasons(fleet) == {"up_to_date": HOSTS}

    asyncio.run(scenario())


def test_a_real_agent_goes_down_to_a_pinned_release(fleet: Fleet) -> None:
    fleet.assign("demo", poll=1.0)
    fleet.publish("demo", "1.0")
    fleet.publish("demo", "2.0")
    host = fleet.add_host()
    host.start()
    wait_until(lambda: host.running_version("demo") == "2.0", 60, "demo 2.0 running")
    fleet.cli("group", "set", "default", "--app", "demo", "--pin", "1.0")
    wait_until(lambda: host.running_version("demo") == "1.0", 60, "demo 1.0, pinned, running")
    assert host.current("demo") == "1.0"
    wait_until(
        lambda: fleet.agent_app(host, "demo").get("reason", {}).get("code") == "pinned",
        30,
        "the fleet view saying pinned",
    )
    reports = fleet.json("fleet", "show", host.name)["reports"]
    assert ("installed", "1.0") in {(r["outcome"], r["version"]) for r in reports}
    host.stop()


def test_a_real_agent_refuses_a_forged_directive_below_the_signed_floor(fleet: Fleet) -> None:
    """A server whose database was edited (the floor erased, a pin below it) sends 1.0, pinned.

    The release key signed the floor 2.0 into 1.0's target when 2.0 was published with
    --floor: the agent refuses it by name, says so, and keeps running 2.0.
    """
    fleet.assign("demo", poll=1.0)
    fleet.publish("demo", "1.0")
    src = make_release(fleet.root / "releases", "2.0")
    fleet.cli("release", "publish", "demo", "2.0", str(src), "--floor")
    host = fleet.add_host()
    host.start()
    wait_until(lambda: host.running_version("demo") == "2.0", 60, "demo 2.0 running")

    with sqlite3.connect(fleet.server_dir / "uptend.db") as db:  # the attacker's edit
        db.execute("UPDATE releases SET floor = 0")
        db.execute("INSERT INTO group_pins VALUES ('default', 'demo', '1.0')")
        db.execute("UPDATE generation SET value = value + 1")  # served at the next check-in

    def refused() -> bool:
        reports = fleet.json("fleet", "show", host.name)["reports"]
        return any(
            (r["outcome"], r["version"]) == ("refused", "1.0")
            and r["reason"] == "1.0 is below the floor 2.0 signed for demo"
            for r in reports
        )

    wait_until(refused, 60, "the agent's refusal of 1.0")
    assert fleet.agent_app(host, "demo")["desired"] == "1.0"  # what the forged server says
    assert host.running_version("demo") == "2.0"
    assert host.current("demo") == "2.0"
    assert "1.0" not in host.versions("demo")  # never even downloaded
    host.stop()
