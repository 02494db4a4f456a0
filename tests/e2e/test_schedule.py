"""Maintenance windows, the freeze and critical releases, end to end against a real server.

Two hundred in-process hosts (tests/support/sim.py: the agent's own decision code and update
machine over real HTTP) on SQLite and PostgreSQL, and one real agent process whose window
opens by the clock, not by a change on the server.
"""

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

from tests.support.fleet import Fleet, Host, make_release, wait_until
from tests.support.sim import SimFleet, SimHost
from tests.support.windows import open_now, shut_now, window_from
from uptend.agent.machine import Phase
from uptend.cli._client import Admin

HOSTS = 200
APP = "schedapp"


def publish(fleet: Fleet, version: str, *flags: str) -> None:
    src = make_release(fleet.root / "releases", version)
    fleet.cli("release", "publish", APP, version, str(src), *flags)


def staged(hosts: list[SimHost], version: str) -> int:
    """Hosts whose `version` is staged and waiting (READY) while they run another."""
    return sum(
        1
        for h in hosts
        if (p := h.plans[APP]).phase is Phase.READY and p.target == version and p.current != version
    )


def last_seen(fleet: Fleet, host: Host) -> datetime:
    [agent] = [a for a in fleet.agents() if a["name"] == host.name]
    return (
        datetime.fromisoformat(agent["last_seen"])
        if agent["last_seen"]
        else datetime.min.replace(tzinfo=UTC)
    )


def reasons(fleet: Fleet) -> dict[str, int]:
    with Admin(fleet.url, fleet.admin_token) as admin:
        (app,) = [a for a in admin.summary().apps if a.app == APP]
        return app.reasons


def test_outside_a_window_hosts_stage_and_wait_then_update_when_it_opens(
    any_db_fleet: Fleet,
) -> None:
    fleet = any_db_fleet
    fleet.cli("group", "set", "sched", "--app", APP, "--poll-interval", "60")
    publish(fleet, "1.0")

    async def scenario() -> None:
        async with SimFleet(fleet.url, fleet.enroll_token) as sims:
            await sims.enroll(HOSTS, group="sched")
            await sims.rounds_until(APP, "1.0")
            fleet.cli("group", "set", "sched", "--window", shut_now())
            publish(fleet, "2.0")
            await sims.round()  # staged, READY: reported as deferred from the next check-in
            await sims.round()  # said so (a deferral report) ...
            await sims.round()  # ... which reaches the server
            assert sims.versions(APP) == Counter({"1.0": HOSTS})
            assert staged(sims.hosts, "2.0") == HOSTS

            assert reasons(fleet) == {"outside_window": HOSTS}
            with Admin(fleet.url, fleet.admin_token) as admin:
                page = admin.agents(outdated=True, reason="outside_window", limit=1000)
                assert page.total == HOSTS
                row = page.agents[0].apps[0]
                assert (row.installed, row.desired, row.state) == ("1.0", "2.0", "deferred")
                assert row.reason.message.startswith("outside maintenance window (next: ")
                said = {
                    (r.outcome, r.reason[:34])
                    for r in admin.agent(page.agents[0].id, by_id=True).reports
                }
                assert ("deferred", "outside maintenance window (next: ") in said

            fleet.cli("group", "set", "sched", "--window", open_now())
            assert await sims.rounds_until(APP, "2.0") == 1  # staged already: switched at once
            await sims.round()
            assert reasons(fleet) == {"up_to_date": HOSTS}

    asyncio.run(scenario())


def test_a_freeze_blocks_and_a_critical_release_passes_it_and_a_shut_window(
    any_db_fleet: Fleet,
) -> None:
    fleet = any_db_fleet
    fleet.cli("group", "set", "frz", "--app", APP, "--poll-interval", "60", "--window", open_now())
    publish(fleet, "1.0")

    async def scenario() -> None:
        async with SimFleet(fleet.url, fleet.enroll_token) as sims:
            await sims.enroll(HOSTS, group="frz")
            await sims.rounds_until(APP, "1.0")
            fleet.cli("freeze", "set", "--until", "+1d", "--reason", "incident review")
            publish(fleet, "2.0")
            await sims.round()
            await sims.round()
            assert sims.versions(APP) == Counter({"1.0": HOSTS})
            assert staged(sims.hosts, "2.0") == HOSTS
            assert reasons(fleet) == {"frozen": HOSTS}

            fleet.cli("group", "set", "frz", "--window", shut_now())  # shut as well as frozen
            await sims.round()
            assert reasons(fleet) == {"frozen": HOSTS}  # the freeze is the reason given
            publish(fleet, "2.0.1", "--critical")
            await sims.rounds_until(APP, "2.0.1")  # the staged 2.0 is dropped for 2.0.1
            await sims.round()
            assert reasons(fleet) == {"up_to_date": HOSTS}
            with Admin(fleet.url, fleet.admin_token) as admin:
                rows = [a.apps[0] for a in admin.agents(limit=1000).agents]
                assert {(r.installed, r.critical) for r in rows} == {("2.0.1", True)}
            fleet.cli("freeze", "clear")

    asyncio.run(scenario())


def test_a_real_agent_stages_outside_its_window_and_installs_once_the_clock_opens_it(
    fleet: Fleet,
) -> None:
    """No change on the server opens this window: only time does (the directive's valid_until)."""
    fleet.assign("demo", poll=1.0)
    fleet.publish("demo", "1.0")
    host = fleet.add_host()
    host.start()
    wait_until(lambda: host.running_version("demo") == "1.0", 60, "demo 1.0 running")

    now = datetime.now(UTC)
    opens = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    if opens - now < timedelta(seconds=20):  # time to see it held first
        opens += timedelta(minutes=1)
    fleet.cli("group", "set", "default", "--window", window_from(opens - now, timedelta(hours=1)))
    fleet.publish("demo", "2.0")

    def held() -> bool:
        reason = fleet.agent_app(host, "demo").get("reason", {})
        return bool(reason.get("code") == "outside_window")

    def reported() -> bool:
        reports = fleet.json("fleet", "show", host.name)["reports"]
        words = "outside maintenance window (next: "
        return any(r["outcome"] == "deferred" and r["reason"].startswith(words) for r in reports)

    wait_until(lambda: "2.0" in host.versions("demo") and held(), 30, "2.0 staged, held")
    wait_until(reported, 30, "the agent's deferral report")
    assert host.journal("demo")["phase"] == "ready"
    assert host.running_version("demo") == "1.0"

    # kill -9 while it waits: the next agent keeps the staged version and goes on waiting
    host.kill()
    restarted = datetime.now(UTC)
    host.start()
    wait_until(lambda: last_seen(fleet, host) > restarted, 30, "a check-in of the new agent")
    assert host.journal("demo")["phase"] == "ready"
    assert "2.0" in host.versions("demo")
    assert host.running_version("demo") == "1.0"
    assert datetime.now(UTC) < opens  # all of that happened before the window opened

    wait_until(lambda: host.running_version("demo") == "2.0", 120, "demo 2.0 once it opens")
    assert datetime.now(UTC) >= opens
    assert host.current("demo") == "2.0"
    host.stop()
