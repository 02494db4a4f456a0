"""The rollout evaluator: idle while no rollout is live, and its transitions wake long-polls.

A real server; its own evaluator (a task, every second) and its own counters
(`/api/v1/server/stats`: `evaluator.passes`, `evaluator.queried`) are what is observed.
"""

import asyncio
import json
import urllib.request
from typing import Any

from sqlalchemy import create_engine, text

from tests.support.fleet import Fleet, make_release, wait_until
from tests.support.sim import SimFleet
from uptend.policy.rollout import wave_of
from uptend.protocol.agent_api import WaitAnswer, WaitRequest
from uptend.server.storage.db import sqlite_url

APP = "evalapp"


def evaluator(fleet: Fleet) -> dict[str, int]:
    request = urllib.request.Request(
        f"{fleet.url}/api/v1/server/stats",
        headers={"Authorization": f"Bearer {fleet.admin_token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        body: dict[str, Any] = json.loads(r.read())
    return dict(body["evaluator"])


def publish(fleet: Fleet, version: str) -> None:
    fleet.cli("release", "publish", APP, version, str(make_release(fleet.root / "r", version)))


def test_the_evaluator_reads_nothing_while_no_rollout_is_live_and_wakes_long_polls(
    fleet: Fleet,
) -> None:
    wait_until(lambda: evaluator(fleet)["passes"] >= 2, what="two passes")
    quiet = evaluator(fleet)
    wait_until(lambda: evaluator(fleet)["passes"] >= quiet["passes"] + 3, what="3 more passes")
    assert evaluator(fleet)["queried"] == quiet["queried"]  # nothing live, nothing read

    async def scenario() -> None:
        async with SimFleet(fleet.url, fleet.enroll_token) as sims:
            fleet.cli("group", "set", "ev", "--app", APP, "--poll-interval", "60")
            publish(fleet, "1.0")
            (host,) = await sims.enroll(1, group="ev")
            await sims.rounds_until(APP, "1.0")
            await sims.round()
            fleet.cli("channel", "set", APP, "stable", "--soak", "0")
            publish(fleet, "2.0")  # a rollout: the generation moved, the evaluator reads again
            await asyncio.to_thread(
                wait_until, lambda: evaluator(fleet)["queried"] > quiet["queried"]
            )
            await sims.round()  # told: it installs 2.0
            assert host.installed(APP) == "2.0"
            assert host.directives is not None
            held = WaitRequest(generation=host.directives.generation, wait_s=50)
            waiting = asyncio.create_task(
                sims._post("/api/v1/wait", held.model_dump_json(), host.credential)
            )
            await sims.round()  # it reports 2.0: the evaluator completes the rollout
            answer = WaitAnswer.model_validate_json(await asyncio.wait_for(waiting, 45))
            assert answer.ring  # woken by the evaluator's transition, not by its 50 s
            assert fleet.json("rollout", "status", APP)["state"] == "completed"
            assert evaluator(fleet)["moved"] == 1

    asyncio.run(scenario())


def test_a_host_enrolled_after_the_start_joins_the_wave_its_rank_puts_it_in(fleet: Fleet) -> None:
    async def scenario() -> None:
        async with SimFleet(fleet.url, fleet.enroll_token) as sims:
            fleet.cli("group", "set", "late", "--app", APP, "--poll-interval", "60")
            publish(fleet, "1.0")
            for _ in range(2):
                await sims.enroll(5, group="late")
            await sims.rounds_until(APP, "1.0")
            await sims.round()
            fleet.cli("channel", "set", APP, "stable", "--waves", "50,100", "--soak", "600")
            publish(fleet, "2.0")
            late = []
            for _ in range(6):
                late += await sims.enroll(5, group="late", prefix="late")
            engine = create_engine(sqlite_url(fleet.server_dir))
            with engine.connect() as conn:  # enrolling wrote no rollout row: a storm stays cheap
                assert conn.execute(text("SELECT count(*) FROM rollout_hosts")).scalar() == 10
            for _ in range(3):  # the first check-in gives a late host its row
                await sims.round()
            with engine.connect() as conn:
                rollout, cuts = conn.execute(text("SELECT id, cutoffs FROM rollouts")).one()
                ids: dict[str, str] = dict(conn.execute(text("SELECT name, id FROM agents")).all())
            engine.dispose()
            wave = {h.name: wave_of(rollout, ids[h.name], json.loads(cuts)) for h in late}
            assert set(wave.values()) == {0, 1}  # 30 late hosts: some rank into each wave
            for h in late:
                assert (h.installed(APP) == "2.0") == (wave[h.name] == 0), h.name
            view = fleet.json("rollout", "status", APP)
            assert [w["hosts"] for w in view["waves"]] == [
                5 + sum(w == 0 for w in wave.values()),
                5 + sum(w == 1 for w in wave.values()),
            ]
            outdated = fleet.json("fleet", "list", "--outdated")
            codes = {a["name"]: a["apps"][0]["reason"]["code"] for a in outdated["agents"]}
            assert {n for n, c in codes.items() if c == "waiting_wave"} == {
                h.name for h in sims.hosts if h.installed(APP) != "2.0"
            }  # a late host in wave 2 installs nothing before its wave opens

    asyncio.run(scenario())
