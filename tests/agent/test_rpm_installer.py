"""The rpm installer and its publish-side metadata, with real rpmbuild and rpm (issue 13)."""

import re
import subprocess
from pathlib import Path

import pytest
from tuf.api.metadata import TargetFile

from tests.support.debs import HeldLock, manifest_for
from tests.support.rpms import DBPATH, build_rpm, private_rpm_root, rpm_query
from uptend import rpmmeta
from uptend.agent.installers import for_version
from uptend.agent.installers.base import InstallFailedError, PackageState, Signed
from uptend.agent.installers.rpm import RpmInstaller
from uptend.agent.layout import Layout
from uptend.errors import ConfigError
from uptend.protocol.manifest import parse_manifest
from uptend.protocol.targets import ArchiveFormat, InstallKind, TargetCustom
from uptend.server.services.releases import describe


class _Job:
    def progress(self, done: int, total: int) -> None:
        pass

    def check(self) -> None:
        pass


def _signed(rpm: Path, version: str, manifest: str) -> Signed:
    name = f"demo/{version}/demo-{version}.rpm"
    custom = TargetCustom(
        app="demo",
        version=version,
        channel="stable",
        kind=InstallKind.RPM,
        format=ArchiveFormat.RPM,
        unpacked_size=0,
        files=0,
        manifest=manifest,
    )
    return Signed(name, TargetFile.from_data(name, rpm.read_bytes()), custom)


def _layout(tmp_path: Path, root: Path) -> Layout:
    layout = Layout(tmp_path / "agent")
    layout.make()
    layout.make_app("demo")
    layout.config.write_text(f'{{"rpm_root": "{root}", "rpm_dbpath": "{DBPATH}"}}')
    return layout


def _section(package: str, version: str) -> str:
    return f'[rpm]\npackage = "{package}"\nversion = "{version}"\n'


def test_a_file_that_is_not_an_rpm_is_never_given_to_rpm_as_a_list(tmp_path: Path) -> None:
    """`rpm -qp` reads a text file as a list of packages: a forged one names the host's files."""
    real = build_rpm(tmp_path, "uptend-demo", "1.0-1", "1.0")
    forged = tmp_path / "forged.rpm"
    forged.write_text(f"{real}\n")  # would be read as uptend-demo 1.0-1 without the lead check
    with pytest.raises(ConfigError, match=re.escape("is not an rpm package (no rpm lead)")):
        rpmmeta.header(forged)
    query = ["rpm", "-qp", "--qf", "%{NAME}", str(forged)]
    direct = subprocess.run(query, capture_output=True, check=False)
    assert direct.stdout == b"uptend-demo"  # the attack is real: rpm alone would be fooled
    size = str((real.parent / "app.py").stat().st_size)
    assert rpmmeta.header(real) == {"Package": "uptend-demo", "Version": "1.0-1", "Size": size}


def test_publish_fills_rpm_from_the_header_and_refuses_what_does_not_match(
    tmp_path: Path,
) -> None:
    rpm = build_rpm(tmp_path / "a", "uptend-demo", "2.0-1", "2.0", manifest=manifest_for("/", "x"))
    text = rpmmeta.manifest_text(rpm)
    manifest = parse_manifest(text.encode())
    assert manifest.rpm is not None
    assert (manifest.rpm.package, manifest.rpm.version) == ("uptend-demo", "2.0-1")
    custom = describe(rpm, "demo", "2.0", "stable", ArchiveFormat.RPM, text)
    assert (custom.kind, custom.manifest) == (InstallKind.RPM, text)
    lying = text.replace('version = "2.0-1"', 'version = "9.0-1"')
    with pytest.raises(ConfigError, match=re.escape("is package uptend-demo 2.0-1, but its")):
        describe(rpm, "demo", "2.0", "stable", ArchiveFormat.RPM, lying)
    both = text + '[deb]\npackage = "uptend-demo"\nversion = "2.0-1"\n'
    with pytest.raises(ConfigError, match=re.escape("more than one of [deb], [rpm], [installer]")):
        describe(rpm, "demo", "2.0", "stable", ArchiveFormat.RPM, both)
    bare = build_rpm(tmp_path / "b", "uptend-demo", "2.0-1", "2.0")
    with pytest.raises(ConfigError, match=re.escape("has no uptend.toml beside it")):
        rpmmeta.manifest_text(bare)


def test_another_package_is_refused_before_rpm_runs(tmp_path: Path) -> None:
    root = private_rpm_root(tmp_path / "root")
    layout = _layout(tmp_path, root)
    rpm = build_rpm(tmp_path, "uptend-evil", "1.0-1", "1.0")
    text = manifest_for(root, "uptend-demo") + _section("uptend-demo", "1.0-1")
    with pytest.raises(ConfigError, match="is package 'uptend-evil', the release declares"):
        RpmInstaller(layout, "demo").stage(_signed(rpm, "1.0", text), rpm, _Job())
    assert list(layout.versions("demo").iterdir()) == []


def test_an_upgrade_is_rpm_u_a_rollback_adds_oldpackage_and_failures_keep_rpms_words(
    tmp_path: Path,
) -> None:
    root = private_rpm_root(tmp_path / "root")
    layout = _layout(tmp_path, root)
    for version, requires in (("1.0", ""), ("2.0", ""), ("3.0", "uptend-missing")):
        rpm = build_rpm(tmp_path, "uptend-demo", f"{version}-1", version, requires=requires)
        text = manifest_for(root, "uptend-demo") + _section("uptend-demo", f"{version}-1")
        RpmInstaller(layout, "demo").stage(_signed(rpm, version, text), rpm, _Job())
    installer = for_version(layout, "demo", "1.0")
    assert installer.kind == "rpm"
    said: list[str] = []
    for version in ("1.0", "2.0"):
        installer.activate(version, said.append)
        assert rpm_query(root, "uptend-demo") == f"{version}-1"
    runs = [line for line in said if line.startswith("running ")]
    prefix = f"running rpm --root={root} --dbpath={DBPATH} -U "
    assert len(runs) == 2
    assert all(r.startswith(prefix) and "--oldpackage" not in r for r in runs)
    assert said[-1] == "rpm reports uptend-demo 2.0-1"
    assert installer.read_back() == PackageState("uptend-demo", "2.0-1", "2.0-1")

    with pytest.raises(InstallFailedError) as refused:
        installer.activate("3.0", said.append)
    assert refused.value.reason.endswith("error: Failed dependencies:")
    assert "uptend-missing is needed by uptend-demo-3.0-1" in refused.value.output
    assert "uptend-missing" in layout.app_log("demo", "3.0").read_text()  # the report's tail
    assert layout.current("demo").readlink().name == "2.0"  # not switched

    said.clear()
    installer.activate("1.0", said.append)  # the rollback: the older file, --oldpackage
    assert said[0].startswith(prefix + "--oldpackage --replacepkgs ")
    assert rpm_query(root, "uptend-demo") == "1.0-1"
    # killed between rpm and `current`, the driver repeats the install: it succeeds again
    installer.activate("1.0", said.append)
    assert rpm_query(root, "uptend-demo") == "1.0-1"
    assert layout.current("demo").readlink().name == "1.0"


def test_an_rpm_transaction_lock_held_by_another_process_makes_the_installer_busy(
    tmp_path: Path,
) -> None:
    root = private_rpm_root(tmp_path / "root")
    installer = RpmInstaller(_layout(tmp_path, root), "demo")
    lock_file = root / "var/lib/rpm/.rpm.lock"
    assert lock_file.exists()
    assert installer.busy() is None  # the file alone: nobody holds it
    lock = HeldLock(lock_file)
    try:
        assert installer.busy() == (
            f"the package manager is busy ({lock_file} held by pid {lock.proc.pid})"
        )
    finally:
        lock.release()
    assert installer.busy() is None
