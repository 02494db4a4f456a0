"""Two server processes on one PostgreSQL evaluate the same rollout: each move happens once.

Both processes run their evaluator every second; hosts check in with either. Every move is a
compare-and-set on the rollout's state version with an audit row in the same transaction, so
a double transition would show as a state version past the number of moves, or an audit row
twice.
"""

import asyncio
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.support.fleet import UPTEND, Fleet, make_release
from tests.support.pg import fresh_database
from tests.support.sim import SimFleet
from uptend.cli._client import Admin

APP = "twinapp"


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
        self.proc.terminate()
        self.proc.wait(timeout=30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.mark.timeout(900)  # 60 hosts on two servers, rounds until 3 waves done: minutes under load
def test_two_server_processes_never_move_a_rollout_twice(tmp_path: Path) -> None:
    with fresh_database() as url, Fleet(tmp_path, database_url=url) as fleet:
        replica = Replica(fleet)
        try:
            asyncio.run(_scenario(fleet, replica))
        finally:
            replica.stop()
        engine = create_engine(url)
        with engine.connect() as conn:
            [(version, state, wave)] = conn.execute(
                text("SELECT state_version, state, wave FROM rollouts")
            ).all()
            moves = (
                conn.execute(text("SELECT detail FROM audit WHERE actor = 'evaluator' ORDER BY id"))
                .scalars()
                .all()
            )
        engine.dispose()
        assert (state, wave) == ("completed", 2)
        assert len(moves) == 3  # wave 2 opens, wave 3 opens, completed: once each
        assert len(set(moves)) == 3
        assert version == 3


async def _scenario(fleet: Fleet, replica: Replica) -> None:
    fleet.cli("group", "set", "twins", "--app", APP, "--poll-interval", "60")
    fleet.cli("release", "publish", APP, "1.0", str(make_release(fleet.root / "r", "1.0")))
    async with (
        SimFleet(fleet.url, fleet.enroll_token) as here,
        SimFleet(replica.url, fleet.enroll_token) as there,
    ):
        await here.enroll(30, group="twins", prefix="here")
        await there.enroll(30, group="twins", prefix="there")
        for sims in (here, there):
            await sims.rounds_until(APP, "1.0")
            await sims.round()
        fleet.cli("channel", "set", APP, "stable", "--waves", "10,50,100")
        fleet.cli("release", "publish", APP, "2.0", str(make_release(fleet.root / "r", "2.0")))
        status: dict[str, object] = {}
        for _ in range(200):
            await asyncio.gather(here.round(), there.round())
            with Admin(fleet.url, fleet.admin_token) as admin:
                status = admin.rollout(APP).model_dump()
            if status["state"] == "completed":
                break
            await asyncio.sleep(0.2)  # the evaluators' turn (each runs every second)
        assert status["state"] == "completed", status
        await asyncio.gather(here.round(), there.round())
        assert here.versions(APP)["2.0"] + there.versions(APP)["2.0"] == 60
