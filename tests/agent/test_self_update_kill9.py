"""The crash-point matrix of the agent's own update: kill -9 at each point, a working agent after.

The companion (every point is reached by one self-update) is in test_self_update.py.
"""

import pytest

from tests.support.agent_builds import SharedBuilds
from tests.support.agent_hosts import NEW, Installed, alive
from tests.support.fleet import Fleet, wait_until

pytestmark = pytest.mark.timeout(600)


def test_kill_9_at_every_point_of_a_self_update_leaves_a_working_agent(
    fleet: Fleet, agent_builds: SharedBuilds, host: Installed
) -> None:
    """Each self-update point, killed once (SIGKILL, no clean-up), in two updates.

    0.2.0: killed when built, after its trial, after the pointer is written; 0.3.0: killed
    at the handover (before the exec) and right after it is confirmed. Each time the
    service stand-in starts the launcher again, which starts a complete agent that finishes
    the update; the app keeps its pid throughout.
    """
    app_pid = host.app_pid()
    host.start(arms=["self:built", "self:trial", "self:pointed"])
    fleet.cli("release", "publish-agent", NEW, str(agent_builds.variant("good", NEW)))
    wait_until(lambda: host.settled_on(NEW), 300, "0.2.0 installed after 3 kills")
    assert host.service is not None
    assert host.service.exits[:3] == [-9, -9, -9]
    assert host.app_pid() == app_pid
    assert alive(app_pid)

    host.start(arms=["self:handover", "self:confirmed"])
    third = agent_builds.variant("third", "0.3.0")
    fleet.cli("release", "publish-agent", "0.3.0", str(third))
    wait_until(lambda: host.settled_on("0.3.0"), 300, "0.3.0 installed after 2 kills")
    assert host.service.exits[:2] == [-9, -9]
    assert host.app_pid() == app_pid
    assert alive(app_pid)
    assert host.status()["versions"]["0.3.0"] == "good"
    outcomes = [(r["version"], r["outcome"]) for r in host.agent_reports()]
    assert sorted(outcomes) == [("0.2.0", "installed"), ("0.3.0", "installed")]
