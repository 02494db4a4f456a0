"""The driver against real files: what it unpacks is what was verified (docs/faults.md B17)."""

import threading
from pathlib import Path

import pytest
from tuf.api.metadata import TargetFile

from uptend import archive
from uptend.agent import machine
from uptend.agent.driver import AppDriver, Signed
from uptend.agent.journal import Journal
from uptend.agent.layout import Layout
from uptend.agent.outbox import Outbox
from uptend.agent.supervisor import Supervisor
from uptend.agent.tuf_session import TufSession
from uptend.protocol.targets import ArchiveFormat, TargetCustom, target_path


def no_session() -> TufSession:
    raise AssertionError("the driver must not need the network to unpack a staged download")


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
    driver = AppDriver(
        layout,
        "demo",
        Supervisor(layout),
        Outbox(layout),
        no_session,
        "http://127.0.0.1:9/tuf/targets/",
        idle=lambda: None,
        stop=threading.Event(),
    )
    driver._write_custom(Signed(name, TargetFile.from_data(name, bundle.read_bytes()), custom))
    staged_file = layout.staging("demo") / Path(name).name
    staged_file.write_bytes(bundle.read_bytes())
    return driver, staged_file


def test_a_verified_download_unpacks_into_versions(staged: tuple[AppDriver, Path]) -> None:
    driver, _ = staged
    assert driver._perform(machine.Unpack("2.0")) == machine.Unpacked()
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
        machine.Plan(machine.Phase.UNPACKING, current=None, target="2.0")
    )

    plan = driver.resume()

    assert plan == machine.Plan(machine.Phase.IDLE, failure=plan.failure)
    assert "no longer verifies" in plan.failure
    assert not driver.layout.version_dir("demo", "2.0").exists()
    assert list(driver.layout.staging("demo").iterdir()) == []
    (report,) = driver.outbox.pending
    assert (report.outcome, report.version) == ("failed", "2.0")
