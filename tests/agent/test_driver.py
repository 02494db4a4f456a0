"""The driver against real files: what it stages is what was verified (docs/faults.md B17)."""

import threading
import time
from pathlib import Path

import pytest
from tuf.api.metadata import TargetFile

from tests.support.fleet import wait_until
from uptend import archive
from uptend.agent import artifacts, decide, jobs, machine
from uptend.agent.driver import AppDriver
from uptend.agent.installers import Signed
from uptend.agent.installers.base import PackageState
from uptend.agent.journal import Journal
from uptend.agent.layout import Layout
from uptend.agent.supervisor import Supervisor
from uptend.agent.worker import Workers, in_thread
from uptend.protocol.targets import ArchiveFormat, TargetCustom, target_path


def facts() -> decide.Facts:
    return decide.Facts(now=time.time(), rand=0.5, poll_s=60.0, kinds=frozenset({"bundle"}))


def settle(driver: AppDriver, timeout_s: float = 30.0) -> None:
    """Tick the driver the way the loop does until nothing is in flight."""
    deadline = time.monotonic() + timeout_s
    driver.tick()
    while driver.busy or driver.action is not None:
        assert time.monotonic() < deadline, f"driver still busy: {driver.plan}"
        time.sleep(0.02)
        driver.tick()


@pytest.fixture
def staged(tmp_path: Path) -> tuple[AppDriver, Path]:
    """A driver whose staging holds a verified download of demo 2.0."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "uptend.toml").write_text('[app]\ncommand = ["true"]\n')
    (src / "app.py").write_text("print('2.0')\n")
    bundle = tmp_path / "bundle.tar.gz"
    archive.pack_dir(src, bundle)
    name = target_path("demo", "2.0", ArchiveFormat.TAR_GZ)
    custom = TargetCustom(
        app="demo",
        version="2.0",
        channel="stable",
        format=ArchiveFormat.TAR_GZ,
        unpacked_size=100,
        files=2,
    )
    layout = Layout(tmp_path / "agent")
    layout.make()
    # no network anywhere: staging a verified download needs none
    targets = "http://127.0.0.1:9/tuf/targets/"
    driver = AppDriver(layout, "demo", Supervisor(layout), targets, facts, in_thread)
    signed = Signed(name, TargetFile.from_data(name, bundle.read_bytes()), custom)
    jobs.keep_record(layout, "demo", "2.0", artifacts.record(signed))
    staged_file = artifacts.artifact(layout, signed)
    staged_file.write_bytes(bundle.read_bytes())
    return driver, staged_file


def test_a_verified_download_is_staged_into_versions(staged: tuple[AppDriver, Path]) -> None:
    driver, _ = staged
    job = jobs.stage(in_thread, driver.layout, "demo", "2.0")
    while not job.done():
        time.sleep(0.01)
    assert job.result() == machine.Staged()
    version_dir = driver.layout.version_dir("demo", "2.0")
    assert sorted(p.name for p in version_dir.iterdir()) == ["app.py", "uptend.toml"]


def test_staged_file_changed_after_verification_is_refused(
    staged: tuple[AppDriver, Path],
) -> None:
    driver, staged_file = staged
    data = bytearray(staged_file.read_bytes())
    data[-10] ^= 0xFF  # same length, other bytes: written after the download verified
    staged_file.write_bytes(bytes(data))
    Journal(driver.layout.journal("demo"), driver.layout.app_dir("demo")).save(
        machine.Plan(machine.Phase.STAGING, current=None, target="2.0", attempts=1)
    )
    driver.plan = driver.journal.load()

    driver.resume()
    settle(driver)

    plan = driver.journal.load()
    assert (plan.phase, plan.current, plan.bad) == (machine.Phase.IDLE, None, ())
    assert "no longer verifies" in plan.failure
    assert not driver.layout.version_dir("demo", "2.0").exists()
    assert list(driver.layout.staging("demo").iterdir()) == []
    (report,) = plan.pending  # recorded with the plan, in the same journal write
    assert (report.outcome, report.version) == ("failed", "2.0")


class Recorder:
    """An observer that keeps what the driver tells it."""

    def __init__(self) -> None:
        self.phases: list[tuple[str, str | None]] = []
        self.spans: list[tuple[str, str | None]] = []

    def phase(self, app: str, phase: str, version: str | None) -> None:
        self.phases.append((phase, version))

    def span(self, app: str, name: str, version: str | None, start: float, end: float) -> None:
        assert app == "demo"
        assert start <= end
        self.spans.append((name, version))


def test_the_observer_sees_each_phase_and_each_timed_step(
    staged: tuple[AppDriver, Path],
) -> None:
    staging, _ = staged
    seen = Recorder()
    layout = staging.layout
    Journal(layout.journal("demo"), layout.app_dir("demo")).save(
        machine.Plan(machine.Phase.STAGING, current=None, target="2.0", attempts=1)
    )
    workers = Workers()  # the real child: its steps are relayed from it
    driver = AppDriver(
        layout, "demo", Supervisor(layout), staging.targets_url, facts, workers, observer=seen
    )
    driver.resume()
    settle(driver)  # 2.0 (`true`) exits at once: unhealthy, rolled back to nothing
    workers.close_idle()

    assert seen.phases == [  # phases entered; the journal already held staging
        ("activating", "2.0"),
        ("probation", "2.0"),
        ("rolling_back", "2.0"),
        ("idle", None),
    ]
    steps = [name for name, _ in seen.spans if name != "journal"]
    assert steps == [
        "verify", "unpack", "sync", "stage",  # the stage job, inner steps first
        "stop", "activate", "start",  # the switch to 2.0
        "stop", "activate",  # the rollback to nothing: deactivated, nothing started
        "cleanup",
    ]  # fmt: skip
    assert ("stage", "2.0") in seen.spans
    assert ("activate", None) in seen.spans
    assert seen.spans.count(("journal", "2.0")) >= 4


class _SlowPackageManager:
    """A fake installer, named as such: its read-back blocks until the test lets it go."""

    kind = "deb"
    activates_in_child = True

    def __init__(self) -> None:
        self.release = threading.Event()
        self.reads = 0

    def read_back(self) -> PackageState:
        self.reads += 1
        self.release.wait(60)
        return PackageState("uptend-demo", "2.0-1", "2.1-3")


def test_a_package_read_back_never_holds_up_a_check_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dpkg-query and rpm -q run on a thread: the check-in says the last read, never waits."""
    layout = Layout(tmp_path / "agent")
    layout.make()
    driver = AppDriver(layout, "demo", Supervisor(layout), "http://127.0.0.1:9/", facts, in_thread)
    driver.plan = machine.Plan(current="2.0")
    slow = _SlowPackageManager()
    monkeypatch.setattr(driver, "_installer", lambda _version: slow)
    assert driver.installed_as() == ("deb", None)  # the read blocks: nothing to say yet
    wait_until(lambda: slow.reads == 1, what="the read-back started")
    assert driver.installed_as() == ("deb", None)  # still reading: not started twice
    assert slow.reads == 1
    slow.release.set()
    wait_until(lambda: driver.reading is not None and driver.reading[1].done(), what="read")
    assert driver.installed_as() == ("deb", PackageState("uptend-demo", "2.0-1", "2.1-3"))
    # an update begins: what was read may change, so it is not said
    driver.plan = machine.Plan(machine.Phase.FETCHING, current="2.0", target="3.0")
    assert driver.installed_as() == ("deb", None)
