"""Apps outlive the agent: a new agent adopts the very processes the old one left, nothing else.

The end-to-end cases run real `uptend agent run` processes against a real server and kill
them with real signals; the supervisor cases run real processes in this one (test_procs.py
tests the identity check itself).
"""

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.crash_support import (
    POLL_S,
    PROBATION_S,
    app_pids,
    kill_app_processes,
    live_pid,
    parent_pid,
    running,
    settled_on,
    start_time,
    wait_settled,
)
from tests.agent.lanes import Lane, lane, shared_fleet
from tests.support.fleet import Host, wait_until
from uptend.agent import files, procs
from uptend.agent import supervisor as supervisor_module
from uptend.agent.layout import Layout
from uptend.agent.procs import Record
from uptend.agent.supervisor import Supervisor

__all__ = ["lane", "shared_fleet"]


def _record(host: Host, app: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((host.dir / "apps" / app / "run.json").read_text())
    return data


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated live process in its own session (so a group kill would reach it)."""
    proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


# -- end to end: real agents, a real server --------------------------------------------------


def _two_apps(lane: Lane) -> tuple[Host, list[str]]:
    apps = [lane.app, f"{lane.app}-b"]
    for app in apps:
        lane.fleet.assign(app, group=lane.group, poll=POLL_S)
        lane.fleet.publish(app, "1.0", probation=PROBATION_S)
    host = lane.fleet.add_host(group=lane.group)
    lane.hosts.append(host)
    host.start()
    for app in apps:
        wait_settled(host, app, "1.0")
    return host, apps


@pytest.fixture
def two_apps(lane: Lane) -> Iterator[tuple[Host, list[str]]]:
    host, apps = _two_apps(lane)
    yield host, apps
    host.kill()
    for app in apps:
        kill_app_processes(host, app)


def test_kill_9_agent_then_restart_adopts_both_apps_and_supervises_them(
    two_apps: tuple[Host, list[str]],
) -> None:
    host, (a, b) = two_apps
    pids = {app: live_pid(host, app) for app in (a, b)}
    host.kill()  # SIGKILL: no finally, nothing stops the apps
    for app, pid in pids.items():
        assert pid is not None
        assert running(pid), f"{app} died with its agent"

    host.start()
    for app in (a, b):
        wait_settled(host, app, "1.0")  # supervised by the new agent: adopted
        assert live_pid(host, app) == pids[app]
        assert app_pids(host, app) == [pids[app]]
        assert _record(host, app)["agent"] == host.proc.pid  # type: ignore[union-attr]
    assert host.log_text().count("adopted ") == 2

    # an adopted app that dies is restarted like any crashed app
    old = pids[a]
    assert old is not None
    os.killpg(old, signal.SIGKILL)
    wait_until(
        lambda: live_pid(host, a) not in (None, old) and settled_on(host, a, "1.0"),
        what=f"{a} restarted",
    )
    new = live_pid(host, a)
    assert new is not None
    assert host.proc is not None
    assert parent_pid(new) == host.proc.pid  # the restart is the agent's own child
    assert live_pid(host, b) == pids[b]

    # SIGTERM keeps its meaning: the agent stops its apps, the adopted one included
    assert host.stop() == 0
    for app in (a, b):
        assert app_pids(host, app) == []
    assert not running(new)
    assert not running(pids[b] or 0)


@pytest.mark.parametrize("how", ["flag", "agent.json"])
def test_keep_apps_on_exit_leaves_them_for_the_next_agent(
    two_apps: tuple[Host, list[str]], how: str
) -> None:
    host, apps = two_apps
    assert host.stop() == 0  # without the setting, SIGTERM stops the apps
    for app in apps:
        assert app_pids(host, app) == []

    if how == "flag":
        host.start(args=["--keep-apps-on-exit"])
    else:
        config = json.loads((host.dir / "agent.json").read_text())
        (host.dir / "agent.json").write_text(json.dumps({**config, "keep_apps_on_exit": True}))
        host.start()
    for app in apps:
        wait_settled(host, app, "1.0")
    pids = {app: live_pid(host, app) for app in apps}
    assert host.stop() == 0
    for app in apps:
        assert app_pids(host, app) == [pids[app]], f"{app} was stopped"

    host.start()
    for app in apps:
        wait_settled(host, app, "1.0")
        assert live_pid(host, app) == pids[app]


@pytest.mark.parametrize("lie", ["start time", "identity"])
def test_a_pid_that_names_another_process_is_left_alone(
    lane: Lane, bystander: subprocess.Popen[bytes], lie: str
) -> None:
    """A reused pid: the record names a live process that is not the app."""
    host = lane.up("1.0")
    assert host.stop() == 0
    assert app_pids(host, lane.app) == []
    start = start_time(bystander.pid)
    version_dir = str(host.dir / "apps" / lane.app / "versions" / "1.0")
    record = {
        "run_id": "feedc0de00000000",
        "version": "1.0",
        "version_dir": version_dir if lie == "start time" else str(host.dir / "elsewhere"),
        "agent": 1,
        "pid": bystander.pid,
        "starttime": str(int(start) - 1) if lie == "start time" else start,
    }
    (host.dir / "apps" / lane.app / "run.json").write_text(json.dumps(record))

    host.start()
    wait_settled(host, lane.app, "1.0")  # started afresh, as the agent's child
    assert live_pid(host, lane.app) != bystander.pid
    assert bystander.poll() is None, "the unrelated process was killed"
    assert running(bystander.pid)
    assert "is another process now; left alone" in host.log_text()


# -- the supervisor on real processes, no server ---------------------------------------------


# Leaving a child running drops its Popen while it runs; in a real handover the agent exits.
_handover = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _installed(tmp_path: Path, *versions: str, app: str = "app") -> Layout:
    layout = Layout(tmp_path / "agent")
    layout.make()
    layout.make_app(app)
    for version in versions:
        d = layout.version_dir(app, version)
        d.mkdir()
        (d / "uptend.toml").write_text(
            f'[app]\ncommand = ["{sys.executable}", "-c", "import time; time.sleep(600)"]\n'
        )
    files.point_current_at(layout.app_dir(app), versions[0])
    return layout


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[Layout]:
    layout = _installed(tmp_path, "1.0", "2.0")
    yield layout
    for run in layout.apps_dir.glob("*/run.json"):  # whatever a test left running
        record = Record.load(run)
        if record is not None and record.pid is not None and running(record.pid):
            os.killpg(record.pid, signal.SIGKILL)


def test_an_app_runs_detached_from_the_agent(layout: Layout) -> None:
    """Its own session and group, stdin /dev/null, output to its log file: no pipe, no tty."""
    supervisor = Supervisor(layout)
    supervisor.start("app")
    record = Record.load(layout.run_file("app"))
    assert record is not None
    assert record.pid is not None
    pid = record.pid
    try:
        assert os.getsid(pid) == pid != os.getsid(0)
        assert os.getpgid(pid) == pid != os.getpgrp()
        assert Path(f"/proc/{pid}/fd/0").readlink() == Path("/dev/null")
        log_file = layout.app_log("app", "1.0")
        assert Path(f"/proc/{pid}/fd/1").readlink() == log_file
        assert Path(f"/proc/{pid}/fd/2").readlink() == log_file
        assert (record.version, record.version_dir, record.agent) == (
            "1.0",
            str(layout.version_dir("app", "1.0")),
            os.getpid(),
        )
        assert record.starttime == start_time(pid)
    finally:
        supervisor.stop_all()
    assert not running(pid)
    assert not layout.run_file("app").exists()


@_handover
def test_a_new_supervisor_adopts_and_stops_the_same_process(layout: Layout) -> None:
    first = Supervisor(layout)
    first.start("app")
    record = Record.load(layout.run_file("app"))
    assert record is not None
    assert record.pid is not None
    first.shut_down(keep_apps=True)
    assert running(record.pid)

    second = Supervisor(layout)
    second.adopt()
    assert second.alive("app")
    assert second.running_version("app") == "1.0"
    second.tick(["app"])  # running: nothing to start
    assert Record.load(layout.run_file("app")) == record  # same agent process here
    assert running(record.pid)

    second.stop("app")
    wait_until(lambda: second.stopped("app"), timeout_s=10, what="stopped")
    assert not running(record.pid)
    assert not second.alive("app")
    assert not layout.run_file("app").exists()


@_handover
def test_an_adopted_app_on_a_version_no_longer_current_is_stopped(layout: Layout) -> None:
    first = Supervisor(layout)
    first.start("app")
    record = Record.load(layout.run_file("app"))
    assert record is not None
    assert record.pid is not None
    first.shut_down(keep_apps=True)
    files.point_current_at(layout.app_dir("app"), "2.0")  # as a switch cut short would

    second = Supervisor(layout)
    second.adopt()  # sends SIGTERM and returns; the tick polls it gone, then starts 2.0
    wait_until(lambda: ticked_to(second, "2.0"), timeout_s=10, what="2.0 started")
    assert not running(record.pid)
    assert Record.load(layout.run_file("app")) != record
    second.stop_all()


def ticked_to(supervisor: Supervisor, version: str) -> bool:
    supervisor.tick(["app"])
    return supervisor.running_version("app") == version


def ignores_sigterm(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


@_handover
def test_a_stale_app_at_start_up_is_stopped_without_blocking(
    layout: Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It ignores SIGTERM: `adopt` returns at once, the tick SIGKILLs it after the timeout."""
    monkeypatch.setattr(supervisor_module, "STOP_TIMEOUT_S", 1.0)
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    (layout.version_dir("app", "1.0") / "uptend.toml").write_text(
        f"[app]\ncommand = {json.dumps([sys.executable, '-c', stubborn])}\n"
    )
    first = Supervisor(layout)
    first.start("app")
    record = Record.load(layout.run_file("app"))
    assert record is not None
    assert record.pid is not None
    pid = record.pid
    wait_until(lambda: ignores_sigterm(pid), what="1.0 ignores SIGTERM")
    first.shut_down(keep_apps=True)
    files.point_current_at(layout.app_dir("app"), "2.0")

    second = Supervisor(layout)
    second.adopt()
    assert running(pid)  # not waited for
    assert Record.load(layout.run_file("app")) == record  # kept for a next agent until gone
    second.tick(["app"])
    assert second.running_version("app") is None  # 2.0 does not start beside it
    wait_until(lambda: ticked_to(second, "2.0"), timeout_s=10, what="2.0 started")
    assert not running(pid)
    second.stop_all()


@_handover
def test_adopted_exit_is_seen_and_the_app_restarted(layout: Layout) -> None:
    first = Supervisor(layout)
    first.start("app")
    first.shut_down(keep_apps=True)
    second = Supervisor(layout)
    second.adopt()
    record = Record.load(layout.run_file("app"))
    assert record is not None
    assert record.pid is not None
    os.killpg(record.pid, signal.SIGKILL)
    wait_until(lambda: not second.alive("app"), timeout_s=10, what="exit seen")
    # not our child: its status went to its parent; said so, not as a made-up code
    assert second.ended("app") == supervisor_module.ADOPTED_EXIT
    assert "255" not in supervisor_module.ADOPTED_EXIT

    def restarted() -> bool:
        second.tick(["app"])
        now = Record.load(layout.run_file("app"))
        return now is not None and now.pid not in (None, record.pid) and second.alive("app")

    wait_until(restarted, timeout_s=10, what="restart after backoff")
    second.stop_all()


def test_a_record_without_a_pid_reaps_the_run_by_its_id(layout: Layout) -> None:
    """The agent died between writing the record and the spawn's pid: found by run id."""
    env = {**os.environ, procs.RUN_ID_ENV: "0123456789abcdef"}
    orphan = subprocess.Popen(["sleep", "600"], env=env, start_new_session=True)
    try:
        # until the exec, the child's /proc environ is still this process's, without the run id
        comm = Path(f"/proc/{orphan.pid}/comm")
        wait_until(lambda: comm.read_bytes().strip() == b"sleep", what="the orphan's exec")
        pre = Record("0123456789abcdef", "1.0", str(layout.version_dir("app", "1.0")), agent=1)
        layout.run_file("app").write_bytes(pre.to_json())
        supervisor = Supervisor(layout)
        supervisor.adopt()
        assert orphan.wait(timeout=15) == -signal.SIGTERM
        wait_until(lambda: supervisor.stopped("app"), what="the run seen gone")
        assert not layout.run_file("app").exists()
    finally:
        orphan.kill()
        orphan.wait()
