"""A new agent version that passes its trial but fails after the switch is undone.

Crashing at every start: the launcher falls back by itself after MAX_BOOTS unconfirmed
starts (no server needed). Running but never checking in: its own probation rolls it back
once `self_confirm_s` (agent.json) has passed, here shortened to a few seconds.
"""

import pytest

from tests.support import agent_hosts
from tests.support.agent_builds import BASE_VERSION, SharedBuilds
from tests.support.agent_hosts import NEW, Installed, left_on_the_first_version, up
from tests.support.fleet import Fleet, wait_until
from uptend.agent.launcher import MAX_BOOTS

pytestmark = pytest.mark.timeout(600)


def test_a_version_that_crashes_after_its_switch_is_undone_by_the_launcher(
    fleet: Fleet, agent_builds: SharedBuilds, host: Installed
) -> None:
    app_pid = host.app_pid()
    wheels = agent_builds.variant("crash", NEW, agent_hosts.crashes_after_switch)
    fleet.cli("release", "publish-agent", NEW, str(wheels))
    left_on_the_first_version(
        host, app_pid, f"stopped {MAX_BOOTS} times before it checked in", tail=True
    )
    assert host.service is not None
    assert len(host.service.pids) >= MAX_BOOTS + 1  # the agent, its crashes, the fallback


CONFIRM_S = 8.0


def test_a_version_that_runs_but_never_checks_in_is_rolled_back_after_the_confirm_timeout(
    fleet: Fleet, agent_builds: SharedBuilds
) -> None:
    fleet.cli("group", "set", "default", "--app", "demo", "--poll-interval", "1")
    fleet.cli("group", "set", "default", "--app", "uptend-agent", "--channel", "stable")
    fleet.publish("demo", "1.0")
    host = up(fleet, agent_builds, "h1", agent_json={"self_confirm_s": CONFIRM_S})
    try:
        app_pid = host.app_pid()
        assert host.service is not None
        agent_pid = host.service.pids[-1]
        wheels = agent_builds.variant("silent", NEW, agent_hosts.checks_in_only_on_trial)
        fleet.cli("release", "publish-agent", NEW, str(wheels))
        # the switch happens (passed its trial, the same process execs into it) ...
        wait_until(lambda: f"/versions/{NEW}/" in host.agent_path(), 240, f"{NEW} running")
        assert host.service.pids == [agent_pid]
        # ... and it rolls itself back once it has not checked in for CONFIRM_S
        why = f"did not check in within {CONFIRM_S:g}s"
        left_on_the_first_version(host, app_pid, why, tail=True)
        assert host.service.pids == [agent_pid]  # handed back by exec too: nothing crashed
        assert host.status()["versions"] == {BASE_VERSION: "good", NEW: "bad"}
    finally:
        host.stop()
