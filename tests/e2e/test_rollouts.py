"""Staged rollouts end to end: 200 in-process hosts over real HTTP against a real server.

The hosts (tests/support/sim.py) run the agent's own decision code and update machine; the
server's own evaluator (a task in the server process, every second) moves the rollouts. Each
test waits on the rollout's reported state, never on a fixed sleep.
"""

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.support.fleet import Fleet, make_release
from tests.support.sim import SimFleet, SimHost
from uptend.cli._client import Admin
from uptend.protocol.rollouts import RolloutView
from uptend.server.storage.db import sqlite_url

HOSTS = 200
APP = "rollapp"


def publish(fleet: Fleet, version: str) -> None:
    fleet.cli("release", "publish", APP, version, str(make_release(fleet.root / "r", version)))


def status(fleet: Fleet) -> RolloutView:
    with Admin(fleet.url, fleet.admin_token) as admin:
        return admin.rollout(APP)


async def until(fleet: Fleet, ok: Callable[[RolloutView], bool], what: str) -> RolloutView:
    """Poll the rollout's status (deadline 30 s) until `ok` holds."""
    view = await asyncio.to_thread(status, fleet)
    for _ in range(300):
        if ok(view):
            return view
        await asyncio.sleep(0.1)
        view = await asyncio.to_thread(status, fleet)
    raise AssertionError(f"{what}: still {view.model_dump_json()}")


def on(hosts: list[SimHost], version: str) -> set[str]:
    return {h.name for h in hosts if h.installed(APP) == version}


def preview_waves(fleet: Fleet) -> dict[str, int]:
    view: dict[str, Any] = fleet.json("rollout", "preview", APP, "--channel", "stable")
    return {name: w["wave"] for w in view["waves"] for name in w["agents"]}


def states(fleet: Fleet) -> dict[str, str]:
    """Each rollout's state, by version, as stored."""
    engine = create_engine(fleet.database_url or sqlite_url(fleet.server_dir))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT version, state FROM rollouts")).all()
    engine.dispose()
    return dict(rows)


def reasons(fleet: Fleet) -> Counter[str]:
    with Admin(fleet.url, fleet.admin_token) as admin:
        page = admin.agents(outdated=True, limit=1000)
    return Counter(a.apps[0].reason.code.value for a in page.agents)


async def setup(fleet: Fleet, sims: SimFleet, *plan: str) -> None:
    fleet.cli("group", "set", "roll", "--app", APP, "--poll-interval", "60")
    publish(fleet, "1.0")
    for _ in range(HOSTS // 8):  # a few at a time: enrollments are writes SQLite serializes
        await sims.enroll(8, group="roll")
    await sims.rounds_until(APP, "1.0")
    await sims.round()  # the server hears of it
    fleet.cli("channel", "set", APP, "stable", *plan)


@pytest.mark.timeout(900)  # 200 hosts, many rounds: minutes on a loaded 2-core machine
def test_a_good_release_goes_wave_by_wave_within_the_cap_and_as_previewed(
    any_db_fleet: Fleet,
) -> None:
    fleet = any_db_fleet
    cap = 30

    async def scenario() -> None:
        async with SimFleet(fleet.url, fleet.enroll_token) as sims:
            await setup(
                fleet, sims, "--waves", "5,25,100", "--soak", "1", "--max-failure-rate", "0.05",
                "--min-sample", "3", "--max-concurrent", str(cap),
            )  # fmt: skip
            previewed = preview_waves(fleet)
            assert Counter(previewed.values()) == {1: 10, 2: 40, 3: 150}
            publish(fleet, "2.0")
            first = status(fleet)
            assert [w.hosts for w in first.waves] == [10, 40, 150]
            before: set[str] = set()
            waves_seen = []
            for _ in range(60):
                await sims.round()
                after = on(sims.hosts, "2.0")
                new = after - before
                assert len(new) <= cap  # told at most `cap` at once (each reports back next round)
                later = status(fleet)
                assert all(previewed[n] <= later.wave for n in new), "took it before its wave"
                waves_seen.append(later.wave)
                if later.state == "completed":
                    break

                def reported(v: RolloutView, n: int = len(before)) -> bool:
                    """The evaluator saw the hosts on 2.0 before this round say so in it."""
                    return sum(w.soaking + w.succeeded for w in v.waves) >= n

                await until(fleet, reported, "reported")
                before = after
            assert on(sims.hosts, "2.0") == {h.name for h in sims.hosts}
            done = status(fleet)
            assert done.state == "completed"
            assert [(w.succeeded, w.failed) for w in done.waves] == [(10, 0), (40, 0), (150, 0)]
            assert waves_seen == sorted(waves_seen)
            assert waves_seen[-1] == 3

    asyncio.run(scenario())


@pytest.mark.timeout(900)
def test_a_release_that_crashes_during_soak_halts_in_wave_1_and_is_reverted(
    any_db_fleet: Fleet,
) -> None:
    fleet = any_db_fleet

    async def scenario() -> None:
        async with SimFleet(fleet.url, fleet.enroll_token) as sims:
            await setup(
                fleet, sims, "--waves", "5,25,100", "--soak", "600", "--max-failure-rate", "0.05",
                "--min-sample", "1", "--on-halt", "revert",
            )  # fmt: skip
            previewed = preview_waves(fleet)
            for h in sims.hosts:
                h.crashy.add("2.0")  # healthy through probation, then it crashes
            publish(fleet, "2.0")
            await sims.round()  # wave 1 takes it
            took = on(sims.hosts, "2.0")
            assert took == {n for n, w in previewed.items() if w == 1}
            await sims.round()  # healthy on 2.0: the soak starts
            await until(fleet, lambda v: v.waves[0].soaking == len(took), "soaking")
            await sims.round()  # a crash
            halted = await until(fleet, lambda v: v.state == "halted", "halted")
            assert "reported hosts failed" in halted.reason
            assert halted.wave == 1
            await sims.round()  # revert directives
            await sims.round()  # ... reported
            assert on(sims.hosts, "2.0") == set()  # it reached no host outside wave 1
            assert on(sims.hosts, "1.0") == {h.name for h in sims.hosts}
            first = status(fleet).waves[0]
            assert first.failed >= 1  # those that crashed before the halt; the rest went back
            assert (first.failed + first.waiting, first.soaking) == (len(took), 0)
            assert reasons(fleet) == {"halted": HOSTS}

    asyncio.run(scenario())


@pytest.mark.timeout(900)
def test_pause_resume_abort_and_supersede(any_db_fleet: Fleet) -> None:
    fleet = any_db_fleet

    async def scenario() -> None:
        async with SimFleet(fleet.url, fleet.enroll_token) as sims:
            await setup(
                fleet, sims, "--waves", "10,100", "--soak", "600", "--max-concurrent", "5"
            )  # fmt: skip
            publish(fleet, "2.0")
            await sims.round()
            assert len(on(sims.hosts, "2.0")) == 5  # the cap
            fleet.cli("rollout", "pause", APP)
            await sims.round()  # reports: slots free
            await until(fleet, lambda v: v.waves[0].installing == 0, "reported")
            await sims.round()
            assert len(on(sims.hosts, "2.0")) == 5  # paused: nobody new takes it
            assert reasons(fleet)["waiting_wave"] == HOSTS - 5
            fleet.cli("rollout", "resume", APP)
            await sims.round()
            assert len(on(sims.hosts, "2.0")) == 10
            assert status(fleet).state == "running"
            fleet.cli("rollout", "abort", APP)
            await sims.round()
            await sims.round()
            assert on(sims.hosts, "1.0") == {h.name for h in sims.hosts}  # all back
            assert status(fleet).state == "aborted"
            assert fleet.cli("rollout", "resume", APP, check=False).returncode != 0

            publish(fleet, "3.0")  # a new rollout
            await sims.round()
            third = status(fleet)
            assert (third.version, third.state) == ("3.0", "running")
            publish(fleet, "3.1")
            with Admin(fleet.url, fleet.admin_token) as admin:
                newest = admin.rollout(APP)
            assert (newest.version, newest.state) == ("3.1", "running")
            assert fleet.json("rollout", "status", APP)["version"] == "3.1"
            assert states(fleet) == {"2.0": "aborted", "3.0": "superseded", "3.1": "running"}
            await sims.round()
            await sims.round()
            assert 0 < len(on(sims.hosts, "3.1")) <= 20  # its own wave 1 only

    asyncio.run(scenario())


def heard(view: RolloutView, n: int) -> bool:
    """The evaluator saw `n` hosts on the new release."""
    return sum(w.soaking + w.succeeded for w in view.waves) >= n


def untold_by_zone(fleet: Fleet) -> dict[str, int]:
    """Per zone, the hosts of the rollout not let through yet (the server's own rows)."""
    engine = create_engine(fleet.database_url or sqlite_url(fleet.server_dir))
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT l.value, count(*) FROM rollout_hosts h JOIN agent_labels l"
                " ON l.agent_id = h.agent_id AND l.key = 'zone' WHERE h.told_at IS NULL"
                " GROUP BY l.value"
            )
        ).all()
    engine.dispose()
    return dict(rows)


def installing_by_zone(fleet: Fleet) -> tuple[dict[str, int], dict[str, int], int, int]:
    """The server's own state: per zone, the hosts holding a slot and the slot count; in all."""
    engine = create_engine(fleet.database_url or sqlite_url(fleet.server_dir))
    with engine.connect() as conn:
        holding = conn.execute(
            text(
                "SELECT l.value, count(*) FROM rollout_hosts h JOIN agent_labels l"
                " ON l.agent_id = h.agent_id AND l.key = 'zone' WHERE h.slot GROUP BY l.value"
            )
        ).all()
        slots = conn.execute(
            text("SELECT value, installing FROM rollout_slots WHERE key = 'zone'")
        ).all()
        total = conn.execute(text("SELECT count(*) FROM rollout_hosts WHERE slot")).scalar()
        counted = conn.execute(text("SELECT sum(installing) FROM rollouts")).scalar()
    engine.dispose()
    return dict(holding), {v: n for v, n in slots if n}, int(total or 0), int(counted or 0)


@pytest.mark.timeout(900)
def test_the_per_label_cap_is_never_exceeded_and_the_fleet_view_agrees(
    any_db_fleet: Fleet,
) -> None:
    fleet = any_db_fleet
    zones, cap = 4, 5

    async def scenario() -> None:
        async with SimFleet(fleet.url, fleet.enroll_token) as sims:
            fleet.cli("group", "set", "roll", "--app", APP, "--poll-interval", "60")
            publish(fleet, "1.0")
            for n in range(HOSTS // 8):

                def zone(i: int, n: int = n) -> list[str]:
                    return [f"zone=z{(8 * n + i) % zones}"]

                await sims.enroll(8, group="roll", labels=zone)
            await sims.rounds_until(APP, "1.0")
            await sims.round()
            fleet.cli(
                "channel", "set", APP, "stable", "--soak", "0",
                "--max-concurrent-per-label", f"zone={cap}",
            )  # fmt: skip
            zone_of = {h.name: f"z{i % zones}" for i, h in enumerate(sims.hosts)}
            publish(fleet, "2.0")
            before: set[str] = set()
            for _ in range(60):  # at most `zones * cap` a round: about 10 rounds
                await sims.round()
                after = on(sims.hosts, "2.0")
                new = Counter(zone_of[n] for n in after - before)
                assert max(new.values(), default=0) <= cap, new  # told at most `cap` per zone

                def reported(v: RolloutView, n: int = len(before)) -> bool:
                    return heard(v, n) or v.state == "completed"

                view = await until(fleet, reported, "reported")
                if view.state == "completed":
                    break
                # The evaluator has freed the slots of the hosts that reported: until the next
                # round only the hosts told in this one hold slots, so the server's state holds
                # still while it is sampled.
                holding, slots, total, counted = installing_by_zone(fleet)
                assert holding == slots  # the slot counts are the hosts holding one
                assert all(n <= cap for n in slots.values()), slots
                assert total == counted
                view = status(fleet)
                outdated = reasons(fleet)
                assert sum(w.installing for w in view.waves) == total
                said = {s.value: s.installing for s in view.per_label if s.installing}
                assert said == slots  # `rollout status` shows the per-label counts
                assert {(s.key, s.cap) for s in view.per_label} == {("zone", cap)}
                # the fleet view: a host not told is held by the cap if its zone is full, else
                # it takes the release at its next check-in; a host told is about to
                untold = untold_by_zone(fleet)
                full = {z for z, n in slots.items() if n == cap}
                assert outdated["concurrency_cap"] == sum(untold.get(z, 0) for z in full)
                pending = sum(n for z, n in untold.items() if z not in full)
                assert outdated["update_pending"] == view.waves[0].installing + pending
                assert view.waves[0].waiting == sum(untold.values())
                before = after
            assert on(sims.hosts, "2.0") == {h.name for h in sims.hosts}
            done = await until(fleet, lambda v: v.state == "completed", "completed")
            assert done.waves[0].succeeded == HOSTS
            assert installing_by_zone(fleet)[1:] == ({}, 0, 0)  # every slot given back

    asyncio.run(scenario())
