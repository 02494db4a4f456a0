"""The agent updates itself: real wheelhouses, a real install, the launcher, real processes.

One module (xdist --dist loadfile: one worker) so the wheelhouse and the installed
environment are built once and shared (hard links) by every test here.
"""

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import agent_builds
from tests.support.agent_builds import BASE_VERSION, ServiceStandIn, share_env
from tests.support.fleet import UPTEND, Fleet, wait_until
from uptend.agent.crashpoints import LOG_ENV, SELF_CRASHPOINTS
from uptend.agent.selfupdate_env import build_env

NEW = "0.2.0"
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("agent-builds")
    base = agent_builds.base_wheelhouse(root / "wheelhouse-1")
    build_env(base, root / "envs")
    return {"base": base, "env": root / "envs" / BASE_VERSION, "root": root}


def variant(builds: dict[str, Path], name: str, patch: agent_builds.Patch | None) -> Path:
    """The wheelhouse of variant `name`, built once per module (tests share the good one)."""
    dest = builds["root"] / f"wh-{name}"
    return dest if dest.is_dir() else agent_builds.variant(builds["base"], dest, NEW, patch)


class Installed:
    """One host: the agent installed under PREFIX, run by a stand-in for systemd."""

    def __init__(self, fleet: Fleet, builds: dict[str, Path], name: str) -> None:
        self.fleet = fleet
        self.name = name
        self.prefix = fleet.root / f"{name}-prefix"
        share_env(builds["env"], self.prefix)
        fleet.cli(
            *("agent", "install", str(self.prefix), "--server", fleet.url),
            *("--token", fleet.enroll_token, "--name", name, "--wheelhouse", str(builds["base"])),
        )
        cfg_file = self.prefix / "data" / "agent.json"
        cfg = json.loads(cfg_file.read_text())
        cfg["check_reboot"] = False
        cfg_file.write_text(json.dumps(cfg))
        self.service: ServiceStandIn | None = None

    def start(self) -> None:
        self.service = ServiceStandIn(self.prefix, self.fleet.root / f"{self.name}.log")

    def status(self) -> dict[str, Any]:
        return self.fleet.json("agent", "status", str(self.prefix / "data"))  # type: ignore[no-any-return]

    def app_pid(self) -> int:
        pid = self.recorded_pid()
        assert pid is not None
        return pid

    def recorded_pid(self) -> int | None:
        """The demo app's pid as run.json records it (None between record and spawn)."""
        try:
            run = json.loads((self.prefix / "data" / "apps" / "demo" / "run.json").read_text())
        except (OSError, ValueError):
            return None
        return None if run.get("pid") is None else int(run["pid"])

    def agent_path(self) -> str:
        assert self.service is not None
        argv = self.service.agent_argv()
        return argv[0] if argv else ""

    def server_view(self) -> dict[str, Any]:
        return self.fleet.json("fleet", "show", self.name)  # type: ignore[no-any-return]

    def journal(self) -> dict[str, Any]:
        path = self.prefix / "data" / "state" / "uptend-agent.journal"
        return json.loads(path.read_text())["plan"]  # type: ignore[no-any-return]

    def log(self) -> str:
        return (self.fleet.root / f"{self.name}.log").read_text()


@pytest.fixture
def host(fleet: Fleet, builds: dict[str, Path]) -> Iterator[Installed]:
    fleet.cli("group", "set", "default", "--app", "demo", "--poll-interval", "1")
    fleet.cli("group", "set", "default", "--app", "uptend-agent", "--channel", "stable")
    fleet.publish("demo", "1.0")
    h = Installed(fleet, builds, "h1")
    h.start()
    wait_until(lambda: _running(h, BASE_VERSION), 60, "agent 0.1.0 checked in")
    wait_until(lambda: h.recorded_pid() is not None, 30, "demo running")
    yield h
    if h.service is not None:
        h.service.stop()
    for run in h.prefix.glob("data/apps/*/run.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            os.killpg(int(json.loads(run.read_text())["pid"]), 9)


def _running(h: Installed, version: str) -> bool:
    agent = h.server_view()["agent"]
    return bool(agent["agent_version"] == version and f"/versions/{version}/" in h.agent_path())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_running_agent_becomes_the_new_version_and_the_app_keeps_its_pid(
    fleet: Fleet, builds: dict[str, Path], host: Installed
) -> None:
    assert host.status()["agent_version"] == BASE_VERSION
    reached = fleet.root / "crashpoints.log"
    _restart(host, [], env={LOG_ENV: str(reached)})
    wait_until(lambda: _running(host, BASE_VERSION), 60, "agent 0.1.0 back")
    app_pid = host.app_pid()
    assert host.service is not None
    agent_pid = host.service.pids[-1]
    wheels = variant(builds, "good", None)
    fleet.cli("release", "publish-agent", NEW, str(wheels))

    wait_until(lambda: _running(host, NEW), 240, "agent 0.2.0 checked in")
    assert host.agent_path() == str(host.prefix / "versions" / NEW / "bin" / "python")
    assert host.service.pids == [agent_pid]  # handed over by exec: the same process
    assert host.app_pid() == app_pid
    assert _alive(app_pid)
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


def _breaks_at_import(src: Path) -> None:
    runner = src / "agent" / "runner.py"
    runner.write_text(runner.read_text() + '\nraise RuntimeError("this build cannot import")\n')


def _exits_at_start(src: Path) -> None:
    config = src / "agent" / "config.py"
    text = config.read_text().replace(
        "def load(layout: Layout) -> AgentConfig:\n",
        "def load(layout: Layout) -> AgentConfig:\n    raise SystemExit(3)\n",
    )
    config.write_text(text)


def _cannot_check_in(src: Path) -> None:
    control = src / "agent" / "control.py"
    text = control.read_text()
    assert "        self.server = " in text
    control.write_text(
        text.replace(
            "        self.server = ",
            '        server = "http://127.0.0.1:9/"\n        self.server = ',
            1,
        )
    )


def _crashes_after_switch(src: Path) -> None:
    resident = src / "agent" / "resident.py"
    text = resident.read_text().replace(
        "    args = parser.parse_args(argv)\n",
        "    args = parser.parse_args(argv)\n    raise SystemExit(7)  # at every start\n",
    )
    resident.write_text(text)


@pytest.mark.parametrize(
    ("name", "patch", "why"),
    [
        ("import", _breaks_at_import, "failed its trial"),
        ("exit", _exits_at_start, "failed its trial"),
        ("checkin", _cannot_check_in, "failed its trial"),
        ("crash", _crashes_after_switch, "stopped 3 times before it checked in"),
    ],
)
def test_a_broken_new_version_leaves_the_host_on_the_first_one(
    fleet: Fleet,
    builds: dict[str, Path],
    host: Installed,
    name: str,
    patch: agent_builds.Patch,
    why: str,
) -> None:
    app_pid = host.app_pid()
    fleet.cli("release", "publish-agent", NEW, str(variant(builds, name, patch)))

    def failed_here() -> bool:
        return NEW in host.journal()["bad"] and host.journal()["phase"] == "idle"

    wait_until(failed_here, 240, f"0.2.0 ({name}) marked bad")
    wait_until(lambda: _running(host, BASE_VERSION), 60, "back on 0.1.0")
    reports = [r for r in host.server_view()["reports"] if r["app"] == "uptend-agent"]
    assert reports, "the failure is reported"
    assert reports[0]["version"] == NEW
    assert reports[0]["outcome"] in ("failed", "rolled_back")
    assert why in reports[0]["reason"]
    assert reports[0]["log_tail"] or name != "crash"  # the dead version's log, when it ran
    status = host.status()
    assert status["agent_version"] == BASE_VERSION
    assert host.app_pid() == app_pid
    assert _alive(app_pid)
    # not retried: a few more polls, and no new attempt
    attempts = len(list((host.prefix / "data/logs/updates").glob("uptend-agent*")))
    before = host.server_view()["agent"]["last_seen"]
    wait_until(lambda: host.server_view()["agent"]["last_seen"] != before, 30, "a check-in")
    assert len(list((host.prefix / "data/logs/updates").glob("uptend-agent*"))) == attempts
    assert host.journal()["target"] is None
    assert status["versions"][NEW] == "bad"
    if name == "crash":
        assert host.service is not None
        assert len(host.service.pids) >= 4


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


def _restart(host: Installed, arms: list[str], env: dict[str, str] | None = None) -> None:
    """Stop the service (the apps stay: --keep-apps-on-exit) and start it with `arms`."""
    assert host.service is not None
    host.service.stop()
    log = host.fleet.root / f"{host.name}.log"
    host.service = ServiceStandIn(host.prefix, log, env=env, arms=arms)


def _settled_on(host: Installed, version: str) -> bool:
    plan = host.journal()
    return plan["phase"] == "idle" and plan["current"] == version and _running(host, version)


def test_kill_9_at_every_point_of_a_self_update_leaves_a_working_agent(
    fleet: Fleet, builds: dict[str, Path], host: Installed
) -> None:
    """Each self-update point, killed once (SIGKILL, no clean-up), in two updates.

    0.2.0: killed when built, after its trial, after the pointer is written; 0.3.0: killed
    at the handover (before the exec) and right after it is confirmed. Each time the
    service stand-in starts the launcher again, which starts a complete agent that finishes
    the update; the app keeps its pid throughout.
    """
    app_pid = host.app_pid()
    _restart(host, ["self:built", "self:trial", "self:pointed"])
    fleet.cli("release", "publish-agent", NEW, str(variant(builds, "good", None)))
    wait_until(lambda: _settled_on(host, NEW), 300, "0.2.0 installed after 3 kills")
    assert host.service is not None
    assert host.service.exits[:3] == [-9, -9, -9]
    assert host.app_pid() == app_pid
    assert _alive(app_pid)

    _restart(host, ["self:handover", "self:confirmed"])
    third = agent_builds.variant(builds["base"], builds["root"] / "wh-third", "0.3.0")
    fleet.cli("release", "publish-agent", "0.3.0", str(third))
    wait_until(lambda: _settled_on(host, "0.3.0"), 300, "0.3.0 installed after 2 kills")
    assert host.service.exits[:2] == [-9, -9]
    assert host.app_pid() == app_pid
    assert _alive(app_pid)
    assert host.status()["versions"]["0.3.0"] == "good"
    outcomes = [
        (r["version"], r["outcome"])
        for r in host.server_view()["reports"]
        if r["app"] == "uptend-agent"
    ]
    assert sorted(outcomes) == [("0.2.0", "installed"), ("0.3.0", "installed")]
