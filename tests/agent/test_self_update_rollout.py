"""A bad agent version in a staged rollout halts it, like a bad app release.

Two installed agents, `uptend-agent` on stable with waves 50,100 (one host, then both). The
new version passes its trial and crashes at every start after its switch: the first-wave
host's launcher falls back, the old version reports the failure, the rollout halts, and the
second-wave host is never offered the version.
"""

import pytest

from tests.support import agent_hosts
from tests.support.agent_builds import BASE_VERSION, SharedBuilds
from tests.support.agent_hosts import NEW, alive, left_on_the_first_version, up
from tests.support.fleet import Fleet, wait_until
from uptend.agent.launcher import MAX_BOOTS

pytestmark = pytest.mark.timeout(600)
APP = "uptend-agent"


def test_a_bad_agent_version_halts_its_rollout_in_the_first_wave(
    fleet: Fleet, agent_builds: SharedBuilds
) -> None:
    fleet.cli("group", "set", "default", "--app", "demo", "--poll-interval", "1")
    fleet.cli("group", "set", "default", "--app", APP, "--channel", "stable")
    fleet.publish("demo", "1.0")
    hosts = {name: up(fleet, agent_builds, name) for name in ("h1", "h2")}
    try:
        fleet.cli(
            "channel", "set", APP, "stable", "--waves", "50,100",
            "--max-failure-rate", "0", "--min-sample", "1", "--on-halt", "revert",
        )  # fmt: skip
        waves = fleet.json("rollout", "preview", APP, "--channel", "stable")["waves"]
        (first,) = waves[0]["agents"]
        (second,) = set(hosts) - {first}
        pids = {name: h.app_pid() for name, h in hosts.items()}
        wheels = agent_builds.variant("crash", NEW, agent_hosts.crashes_after_switch)
        fleet.cli("release", "publish-agent", NEW, str(wheels))

        def state() -> str:
            return hosts[first].admin.rollout(APP, None).state

        wait_until(lambda: state() == "halted", 240, "the rollout halts on the bad agent")
        status = fleet.json("rollout", "status", APP)
        assert status["version"] == NEW
        assert "reported hosts failed" in status["reason"]
        assert status["wave"] == 1
        assert (status["waves"][0]["hosts"], status["waves"][0]["failed"]) == (1, 1)
        assert status["waves"][1]["installing"] == status["waves"][1]["succeeded"] == 0

        why = f"stopped {MAX_BOOTS} times before it checked in"
        left_on_the_first_version(hosts[first], pids[first], why, tail=True)
        # the second wave's host: a few more check-ins, never offered the bad version
        other = hosts[second]
        before = other.server_view()["agent"]["last_seen"]
        wait_until(lambda: other.server_view()["agent"]["last_seen"] != before, 30, "a check-in")
        assert other.attempts() == 0
        assert other.journal()["target"] is None
        assert other.agent_reports() == []
        assert other.status()["versions"] == {BASE_VERSION: "good"}
        assert other.running(BASE_VERSION)
        assert other.service is not None
        assert len(other.service.pids) == 1
        assert other.app_pid() == pids[second]
        assert alive(pids[second])
    finally:
        for h in hosts.values():
            h.stop()
