"""The agent updates itself: real wheelhouses, a real install, the launcher, real processes.

The builds are the session's (tests/support/agent_builds.SharedBuilds: made once, shared by
every xdist worker). The broken versions, the kills and the rollout are in the
test_self_update_*.py files, so that `--dist loadfile` runs them side by side.
"""

import subprocess
from pathlib import Path

import pytest

from tests.support.agent_builds import BASE_VERSION, SharedBuilds, share_env
from tests.support.agent_hosts import NEW, Installed, alive
from tests.support.fleet import UPTEND, Fleet, wait_until
from uptend.agent.crashpoints import LOG_ENV, SELF_CRASHPOINTS

pytestmark = pytest.mark.timeout(600)


def test_the_running_agent_becomes_the_new_version_and_the_app_keeps_its_pid(
    fleet: Fleet, agent_builds: SharedBuilds, host: Installed
) -> None:
    assert host.status()["agent_version"] == BASE_VERSION
    reached = fleet.root / "crashpoints.log"
    host.start(env={LOG_ENV: str(reached)})
    wait_until(lambda: host.running(BASE_VERSION), 60, "agent 0.1.0 back")
    app_pid = host.app_pid()
    assert host.service is not None
    agent_pid = host.service.pids[-1]
    wheels = agent_builds.variant("good", NEW)
    fleet.cli("release", "publish-agent", NEW, str(wheels))

    wait_until(lambda: host.running(NEW), 240, "agent 0.2.0 checked in")
    assert host.agent_path() == str(host.prefix / "versions" / NEW / "bin" / "python")
    assert host.service.pids == [agent_pid]  # handed over by exec: the same process
    assert host.app_pid() == app_pid
    assert alive(app_pid)
    wait_until(lambda: host.journal()["phase"] == "idle", 30, "the switch settled")
    assert host.journal()["current"] == NEW
    status = host.status()
    assert status["agent_version"] == NEW
    assert status["agent_path"] == str(host.prefix / "versions" / NEW / "bin" / "python")
    assert status["versions"] == {BASE_VERSION: "old", NEW: "good"}
    reports = host.server_view()["reports"]
    assert any(r["app"] == "uptend-agent" and r["outcome"] == "installed" for r in reports)
    # the companion of the crash-point test: one self-update reaches every point
    assert set(SELF_CRASHPOINTS) <= set(reached.read_text().split())


def test_install_enrolls_the_agent_with_its_labels(
    fleet: Fleet, agent_builds: SharedBuilds
) -> None:
    prefix = fleet.root / "labelled-prefix"
    share_env(agent_builds.env, prefix)  # the session's build, which the install finds in place
    out = fleet.json(
        *("agent", "install", str(prefix), "--server", fleet.url, "--token", fleet.enroll_token),
        *("--name", "labelled", "--wheelhouse", str(agent_builds.base)),
        *("--label", "zone=eu-1", "--label", "rack=r7", "--label", "zone=eu-2"),
    )
    assert out["name"] == "labelled"
    agent = fleet.json("fleet", "show", "labelled")["agent"]
    assert agent["labels"] == {"zone": "eu-2", "rack": "r7"}  # a key given twice: the last
    assert agent["id"] == out["agent_id"]


def test_install_service_writes_a_unit_that_keeps_the_apps(tmp_path: Path) -> None:
    prefix = tmp_path / "p"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "uptend-agent").write_text("#!/bin/sh\n")
    unit = tmp_path / "uptend-agent.service"
    done = subprocess.run(
        [*UPTEND, "agent", "install-service", str(prefix), "--output", str(unit)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "wrote" in done.stdout
    text = unit.read_text()
    assert f"ExecStart={prefix}/bin/uptend-agent --keep-apps-on-exit" in text
    for line in ("Restart=always", "KillMode=process", "Type=notify", "WatchdogSec=60"):
        assert line in text.splitlines()
