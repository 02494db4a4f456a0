"""A thousand in-process hosts against one real server: the fleet-scale path, end to end.

The hosts run the agent's own decision code and update machine (tests/support/sim.py) with a
fake installer, so one process drives them all over real HTTP, on the embedded SQLite default.
"""

import asyncio
from collections import Counter
from pathlib import Path

from tests.support.fleet import Fleet
from tests.support.sim import SimFleet
from uptend.cli._client import Admin

HOSTS = 1000
APP = "fleetapp"


def test_a_thousand_hosts_go_from_v1_to_v2_and_the_bad_ones_roll_back(tmp_path: Path) -> None:
    with Fleet(tmp_path) as fleet:
        fleet.assign(APP, poll=60)
        fleet.publish(APP, "1.0")

        async def scenario() -> tuple[int, int]:
            async with SimFleet(fleet.url, fleet.enroll_token) as sims:
                await sims.enroll(HOSTS)
                first = await sims.rounds_until(APP, "1.0")
                # a tenth of the fleet finds 2.0 unhealthy: they must roll back to 1.0
                bad = sims.hosts[::10]
                for host in bad:
                    host.unhealthy.add("2.0")
                fleet.publish(APP, "2.0")
                await sims.round()
                good = [h for h in sims.hosts if h not in bad]
                assert sims.versions(APP, good) == Counter({"2.0": len(good)})
                assert sims.versions(APP, bad) == Counter({"1.0": len(bad)})
                await sims.round()  # the reports of the last round reach the server
                return first, sims.checkins

        first, checkins = asyncio.run(scenario())
        assert first == 1  # told, installed (the fake install is instant), reported next round

        with Admin(fleet.url, fleet.admin_token) as admin:
            (app,) = [a for a in admin.summary().apps if a.app == APP]
            assert app.agents == HOSTS
            assert app.versions == {"2.0": 900, "1.0": 100}
            assert app.reasons == {"up_to_date": 900, "failed": 100}

            failed = admin.agents(reason="failed", limit=1000)
            assert failed.total == 100
            sample = failed.agents[0]
            (row,) = [a for a in sample.apps if a.app == APP]
            assert row.installed == "1.0"
            assert "unhealthy" in row.reason.message
            outcomes = {r.outcome for r in admin.agent(sample.name).reports}
        assert {"installed", "rolled_back"} <= outcomes
        assert checkins == 3 * HOSTS
