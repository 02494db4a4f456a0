"""The command kind: a shell installer with each exit-code class, real processes (issue 13).

POSIX exit codes are 8 bits, so msiexec's 3010 and 1618 cannot be exited here: the manifest
maps Linux codes to the same classes (reboot = [100], busy = [75], EX_TEMPFAIL).
"""

import os
import time
from pathlib import Path

import pytest
from tuf.api.metadata import TargetFile

from uptend import debmeta
from uptend.agent import decide, machine
from uptend.agent.driver import AppDriver
from uptend.agent.installers import for_version
from uptend.agent.installers.base import InstallBusyError, InstallFailedError, Signed
from uptend.agent.installers.command import CommandInstaller
from uptend.agent.journal import Journal
from uptend.agent.layout import Layout
from uptend.agent.supervisor import Supervisor
from uptend.agent.worker import in_thread
from uptend.errors import ConfigError
from uptend.protocol.targets import ArchiveFormat, InstallKind, TargetCustom
from uptend.server.services.releases import describe

INSTALLER = """#!/bin/sh
echo "installing $2 into $1"
mkdir -p "$1" && echo "$2" > "$1/installed"
echo "pid $$" > "$1/pid"
case "$3" in
  hang) sleep 30; code=0 ;;
  busy-once:*) f="${3#busy-once:}"; if [ -e "$f" ]; then code=0; else touch "$f"; code=75; fi ;;
  *) code="$3" ;;
esac
exit "$code"
"""


class _Job:
    def progress(self, done: int, total: int) -> None:
        pass

    def check(self) -> None:
        pass


def _stage(layout: Layout, version: str, dest: Path, code: str, timeout: float = 30) -> None:
    manifest = (
        '[app]\ncommand = ["sleep", "30"]\n\n[health]\nprobation = 0.2\n\n[installer]\n'
        f'command = ["sh", "{{file}}", "{dest}", "{version}", "{code}"]\nfile = "setup.sh"\n'
        f"timeout = {timeout}\nsuccess = [0]\nreboot = [100]\nbusy = [75]\n"
    )
    artifact = layout.staging("demo") / f"demo-{version}.file"
    artifact.write_text(INSTALLER)
    name = f"demo/{version}/demo-{version}.file"
    custom = TargetCustom(
        app="demo",
        version=version,
        channel="stable",
        kind=InstallKind.COMMAND,
        format=ArchiveFormat.FILE,
        unpacked_size=0,
        files=1,
        manifest=manifest,
    )
    signed = Signed(name, TargetFile.from_data(name, artifact.read_bytes()), custom)
    CommandInstaller(layout, "demo").stage(signed, artifact, _Job())


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    layout = Layout(tmp_path / "agent")
    layout.make()
    layout.make_app("demo")
    return layout


def test_each_exit_code_class_of_the_installer(layout: Layout, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    for version, code in (("1.0", "0"), ("2.0", "100"), ("3.0", "75"), ("4.0", "7")):
        _stage(layout, version, dest, code)
    installer = for_version(layout, "demo", "1.0")
    assert installer.kind == "command"
    said: list[str] = []

    installer.activate("1.0", said.append)  # success
    assert (dest / "installed").read_text() == "1.0\n"
    assert layout.current("demo").readlink().name == "1.0"
    assert f"installer: installing 1.0 into {dest}" in said

    installer.activate("2.0", said.append)  # success, a reboot finishes it
    assert layout.current("demo").readlink().name == "2.0"
    assert said[-1] == "installed; a reboot is required to finish (exit code 100)"

    with pytest.raises(InstallBusyError, match="busy"):  # another install runs: deferred
        installer.activate("3.0", said.append)
    assert layout.current("demo").readlink().name == "2.0"

    with pytest.raises(InstallFailedError, match="exited with code 7") as failed:
        installer.activate("4.0", said.append)
    assert "installing 4.0" in failed.value.output  # the report's tail
    assert "installing 4.0" in layout.app_log("demo", "4.0").read_text()
    assert layout.current("demo").readlink().name == "2.0"


def test_a_hung_installer_is_killed_at_its_timeout(layout: Layout, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    _stage(layout, "1.0", dest, "hang", timeout=0.5)
    with pytest.raises(InstallFailedError, match=r"took over 0.5 s and was killed"):
        for_version(layout, "demo", "1.0").activate("1.0")
    pid = int((dest / "pid").read_text().split()[1])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # reaped by init once killed: poll for it, with a deadline
    assert not Path(f"/proc/{pid}").exists()
    assert not os.path.lexists(layout.current("demo"))  # nothing was switched


def test_a_busy_installer_defers_the_switch_and_the_old_version_runs_on(
    layout: Layout, tmp_path: Path
) -> None:
    """A busy installer (msiexec's 1618) via the driver: the old app runs again, then it retries."""
    dest = tmp_path / "dest"
    once = tmp_path / "busy-once"
    _stage(layout, "1.0", dest, "0")
    _stage(layout, "2.0", dest, f"busy-once:{once}")
    for_version(layout, "demo", "1.0").activate("1.0")
    Journal(layout.journal("demo"), layout.app_dir("demo")).save(
        machine.Plan(machine.Phase.ACTIVATING, current="1.0", target="2.0")
    )
    supervisor = Supervisor(layout)
    driver = AppDriver(layout, "demo", supervisor, "http://127.0.0.1:9/", _facts, in_thread)
    try:
        driver.resume()  # repeats the switch to 2.0: its installer says busy
        deadline = time.monotonic() + 30
        while not driver.deferred:
            assert time.monotonic() < deadline, driver.plan
            time.sleep(0.02)
            driver.tick()
        assert "busy (exit code 75)" in driver.deferred
        assert supervisor.alive("demo")  # 1.0 again, while 2.0 waits
        assert layout.current("demo").readlink().name == "1.0"
        assert driver.plan.phase.value == "activating"  # not failed, not marked bad
        driver.switch_at = 0.0  # the retry's time has come (instead of waiting 30 s)
        while driver.plan.phase is not machine.Phase.IDLE:
            assert time.monotonic() < deadline + 30, driver.plan
            time.sleep(0.02)
            driver.tick()
        assert (driver.plan.current, driver.plan.bad) == ("2.0", ())
        assert (dest / "installed").read_text() == "2.0\n"
    finally:
        supervisor.stop_all()


def _facts() -> decide.Facts:
    return decide.Facts(now=time.time(), rand=0.5, poll_s=60.0, kinds=frozenset({"command"}))


def test_publish_side_an_installer_with_its_sidecar_is_a_command_release(tmp_path: Path) -> None:
    setup = tmp_path / "setup.sh"
    setup.write_text(INSTALLER)
    assert not debmeta.installer_sidecar(setup)  # no uptend.toml beside it
    text = '[app]\ncommand = ["true"]\n\n[installer]\ncommand = ["sh", "{file}"]\n'
    (tmp_path / "uptend.toml").write_text(text)
    assert debmeta.installer_sidecar(setup)
    custom = describe(setup, "demo", "1.0", "stable", ArchiveFormat.FILE, text)
    assert (custom.kind, custom.format, custom.manifest) == (
        InstallKind.COMMAND,
        ArchiveFormat.FILE,
        text,
    )
    with pytest.raises(ConfigError, match="needs its manifest with an"):
        describe(setup, "demo", "1.0", "stable", ArchiveFormat.FILE, '[app]\ncommand = ["x"]\n')


@pytest.mark.parametrize(
    ("kind", "fmt", "manifest"),
    [
        (InstallKind.BUNDLE, ArchiveFormat.FILE, None),
        (InstallKind.COMMAND, ArchiveFormat.DEB, "x"),
        (InstallKind.DEB, ArchiveFormat.TAR_GZ, "x"),
        (InstallKind.COMMAND, ArchiveFormat.FILE, None),
        (InstallKind.BUNDLE, ArchiveFormat.ZIP, "x"),
    ],
)
def test_signed_custom_pairs_each_kind_with_its_format(
    kind: InstallKind, fmt: ArchiveFormat, manifest: str | None
) -> None:
    with pytest.raises(ValueError, match="release"):
        TargetCustom(
            app="demo",
            version="1.0",
            channel="stable",
            kind=kind,
            format=fmt,
            unpacked_size=0,
            files=0,
            manifest=manifest,
        )
