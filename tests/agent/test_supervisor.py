"""Stopping an app never blocks the loop: `stop` returns at once, `stopped` is polled.

Real processes: an app that ignores SIGTERM is killed once the timeout passes, and
`stop_all` (the agent's exit) waits for it.
"""

import sys
from pathlib import Path

import pytest

from tests.agent.crash_support import running
from tests.support.fleet import wait_until
from uptend.agent import files, supervisor
from uptend.agent.layout import Layout
from uptend.agent.procs import Record
from uptend.agent.supervisor import Supervisor

STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(600)"
)


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    """App `app` at 1.0, a process that ignores SIGTERM."""
    layout = Layout(tmp_path / "agent")
    layout.make()
    layout.make_app("app")
    d = layout.version_dir("app", "1.0")
    d.mkdir()
    (d / "uptend.toml").write_text(f'[app]\ncommand = ["{sys.executable}", "-c", "{STUBBORN}"]\n')
    files.point_current_at(layout.app_dir("app"), "1.0")
    return layout


def started(sup: Supervisor, layout: Layout) -> int:
    """Start the app; its pid once it ignores SIGTERM."""
    sup.start("app")
    record = Record.load(layout.run_file("app"))
    assert record is not None
    assert record.pid is not None
    log = layout.app_log("app", "1.0")
    wait_until(lambda: "ready" in log.read_text(), what="SIGTERM ignored")
    return record.pid


def test_stop_returns_before_an_app_that_ignores_sigterm_is_gone_then_kills_it(
    layout: Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor, "STOP_TIMEOUT_S", 1.0)
    sup = Supervisor(layout)
    pid = started(sup, layout)

    sup.stop("app")
    assert running(pid)  # stop did not wait for it
    assert not sup.stopped("app")
    assert not sup.alive("app")
    assert layout.run_file("app").exists()  # until it is gone: a new agent would adopt it
    sup.start("app")  # still stopping: never a second instance
    record = Record.load(layout.run_file("app"))
    assert record is not None
    assert record.pid == pid

    wait_until(lambda: sup.stopped("app"), timeout_s=10, what="killed after the timeout")
    assert not running(pid)
    assert not layout.run_file("app").exists()
    sup.start("app")  # gone: it can start again
    assert sup.alive("app")
    sup.stop_all()


def test_stop_all_waits_for_an_app_that_ignores_sigterm(
    layout: Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor, "STOP_TIMEOUT_S", 0.5)
    sup = Supervisor(layout)
    pid = started(sup, layout)
    sup.stop_all()
    assert not running(pid)
    assert sup.stopped("app")
    assert not layout.run_file("app").exists()


@pytest.mark.parametrize(
    ("code", "says"),
    [("sys.exit(3)", "exited with code 3"), ("os.kill(os.getpid(), 9)", "was killed by signal 9")],
)
def test_how_an_app_of_ours_ended_is_said_as_it_is(layout: Layout, code: str, says: str) -> None:
    (layout.version_dir("app", "1.0") / "uptend.toml").write_text(
        f'[app]\ncommand = ["{sys.executable}", "-c", "import os, sys; {code}"]\n'
    )
    sup = Supervisor(layout)
    assert sup.ended("app") is None  # never started
    sup.start("app")
    wait_until(lambda: not sup.alive("app"), what="the app ended")
    assert sup.ended("app") == says
    sup.stop_all()


def test_the_crash_count_outlives_an_agent_restart(layout: Layout) -> None:
    """A crash during a rollout's soak must not be hidden by restarting the agent."""
    (layout.version_dir("app", "1.0") / "uptend.toml").write_text(
        f'[app]\ncommand = ["{sys.executable}", "-c", "import sys; sys.exit(3)"]\n'
    )
    sup = Supervisor(layout)
    sup.start("app")
    wait_until(lambda: not sup.alive("app"), what="the app ended")
    sup.tick(["app"])  # the supervisor sees the crash
    assert sup.crashes("app") == 1
    sup.stop_all()

    again = Supervisor(layout)  # a new agent process: nothing in memory
    assert again.crashes("app") == 1
    again.start("app")
    wait_until(lambda: not again.alive("app"), what="the app ended again")
    again.tick(["app"])
    assert again.crashes("app") == 2  # counted on from what was recorded
    again.stop_all()

    files.point_current_at(layout.app_dir("app"), "1.0")  # same version: the count stands
    assert Supervisor(layout).crashes("app") == 2
    (layout.app_dir("app") / supervisor.CRASHES_FILE).write_text(
        '{"version": "1.0", "crashes": -5}'
    )
    assert Supervisor(layout).crashes("app") == 0  # a damaged record counts as none


def test_a_new_version_starts_its_crash_count_at_zero(layout: Layout) -> None:
    (layout.app_dir("app") / supervisor.CRASHES_FILE).write_text('{"version": "0.9", "crashes": 4}')
    assert Supervisor(layout).crashes("app") == 0
