"""A new agent version that fails its trial is never made current: the host stays on 0.1.0.

Broken three ways (raises at import, exits at start, cannot check in: a bad URL compiled
in); each time the running version reports the failure with the trial's output, marks the
version bad, does not try it again, and the app keeps its pid.
"""

import pytest

from tests.support import agent_hosts
from tests.support.agent_builds import Patch, SharedBuilds
from tests.support.agent_hosts import NEW, Installed, left_on_the_first_version
from tests.support.fleet import Fleet

pytestmark = pytest.mark.timeout(600)


@pytest.mark.parametrize(
    ("name", "patch"),
    [
        ("import", agent_hosts.breaks_at_import),
        ("exit", agent_hosts.exits_at_start),
        ("checkin", agent_hosts.cannot_check_in),
    ],
)
def test_a_version_that_fails_its_trial_leaves_the_host_on_the_first_one(
    fleet: Fleet, agent_builds: SharedBuilds, host: Installed, name: str, patch: Patch
) -> None:
    app_pid = host.app_pid()
    fleet.cli("release", "publish-agent", NEW, str(agent_builds.variant(name, NEW, patch)))
    left_on_the_first_version(host, app_pid, "failed its trial", tail=False)
    assert host.service is not None
    assert len(host.service.pids) == 1  # never switched: the same agent process throughout
