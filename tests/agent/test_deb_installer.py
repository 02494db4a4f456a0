"""The deb installer and its publish-side metadata, with real dpkg-deb and dpkg (issue 13)."""

import re
import secrets
import subprocess
from pathlib import Path

import pytest
from tuf.api.metadata import TargetFile

from tests.support.debs import HeldLock, build_deb, manifest_for, private_root, query
from tests.support.fleet import wait_until
from uptend import debmeta
from uptend.agent import installers
from uptend.agent.installers import for_version
from uptend.agent.installers.base import InstallFailedError, PackageState, Signed
from uptend.agent.installers.deb import DebInstaller
from uptend.agent.layout import Layout
from uptend.agent.supervisor import read_manifest
from uptend.errors import ConfigError
from uptend.protocol.manifest import MANIFEST_NAME, Manifest, parse_manifest
from uptend.protocol.targets import ArchiveFormat, InstallKind, TargetCustom
from uptend.server.services.releases import describe


class _Job:
    def progress(self, done: int, total: int) -> None:
        pass

    def check(self) -> None:
        pass


def _signed(deb: Path, version: str, manifest: str) -> Signed:
    name = f"demo/{version}/demo-{version}.deb"
    custom = TargetCustom(
        app="demo",
        version=version,
        channel="stable",
        kind=InstallKind.DEB,
        format=ArchiveFormat.DEB,
        unpacked_size=0,
        files=0,
        manifest=manifest,
    )
    return Signed(name, TargetFile.from_data(name, deb.read_bytes()), custom)


def _layout(tmp_path: Path) -> Layout:
    layout = Layout(tmp_path / "agent")
    layout.make()
    layout.make_app("demo")
    return layout


def test_a_package_other_than_the_declared_one_is_refused_at_stage(tmp_path: Path) -> None:
    deb = build_deb(tmp_path, "uptend-evil", "1.0-1", "1.0")
    manifest = (
        manifest_for("/", "uptend-demo") + '[deb]\npackage = "uptend-demo"\nversion = "1.0-1"\n'
    )
    layout = _layout(tmp_path)
    with pytest.raises(ConfigError, match="is package 'uptend-evil', the release declares"):
        DebInstaller(layout, "demo").stage(_signed(deb, "1.0", manifest), deb, _Job())
    assert list(layout.versions("demo").iterdir()) == []


def test_publish_defaults_come_from_the_control_fields(tmp_path: Path) -> None:
    deb = build_deb(
        tmp_path, "uptend-demo", "2.0-1", "2.0", fields="X-Uptend-Command: /usr/bin/demo --serve\n"
    )
    text = debmeta.manifest_text(deb)
    manifest = parse_manifest(text.encode())
    assert manifest.app.command == ["/usr/bin/demo", "--serve"]
    assert manifest.deb is not None
    assert (manifest.deb.package, manifest.deb.version) == ("uptend-demo", "2.0-1")
    custom = describe(deb, "demo", "2.0", "stable", ArchiveFormat.DEB, text)
    assert (custom.kind, custom.manifest) == (InstallKind.DEB, text)


def test_publish_refuses_what_does_not_match_the_package(tmp_path: Path) -> None:
    bare = build_deb(tmp_path / "a", "uptend-demo", "2.0-1", "2.0")
    with pytest.raises(
        ConfigError, match=re.escape("no uptend.toml beside it and no X-Uptend-Command")
    ):
        debmeta.manifest_text(bare)
    lying = manifest_for("/", "x") + '[deb]\npackage = "uptend-other"\nversion = "2.0-1"\n'
    deb = build_deb(tmp_path / "b", "uptend-demo", "2.0-1", "2.0", manifest=lying)
    with pytest.raises(
        ConfigError, match=re.escape("is package uptend-demo 2.0-1, but its manifest declares")
    ):
        debmeta.manifest_text(deb)
    with pytest.raises(ConfigError, match="not a Debian package"):
        debmeta.control_fields(deb.parent / "uptend.toml")
    with pytest.raises(ConfigError, match="needs its manifest"):
        describe(deb, "demo", "2.0", "stable", ArchiveFormat.DEB, None)


def test_private_root_install_is_read_back_and_a_failure_keeps_dpkgs_words(
    tmp_path: Path,
) -> None:
    root = private_root(tmp_path / "root")
    layout = _layout(tmp_path)
    layout.config.write_text(f'{{"dpkg_root": "{root}"}}')
    said: list[str] = []
    for version, depends in (("1.0", ""), ("2.0", "uptend-missing")):
        deb = build_deb(tmp_path, "uptend-demo", f"{version}-1", version, depends=depends)
        deb_section = f'[deb]\npackage = "uptend-demo"\nversion = "{version}-1"\n'
        text = manifest_for(root, "uptend-demo") + deb_section
        DebInstaller(layout, "demo").stage(_signed(deb, version, text), deb, _Job())
    installer = for_version(layout, "demo", "1.0")
    assert installer.kind == "deb"
    installer.activate("1.0", said.append)
    assert said[0].startswith(f"running dpkg --root={root}")
    assert said[-1] == "dpkg reports uptend-demo 1.0-1"
    with pytest.raises(InstallFailedError) as refused:
        installer.activate("2.0", said.append)
    assert "uptend-missing" in refused.value.output
    assert "uptend-missing" in layout.app_log("demo", "2.0").read_text()  # the report's tail
    assert layout.current("demo").readlink().name == "1.0"  # not switched
    installer.activate("1.0", said.append)  # the rollback: dpkg -i of the older file
    assert query(root, "uptend-demo") == "1.0-1 ii"
    assert installer.read_back() == PackageState("uptend-demo", "1.0-1", "1.0-1")
    by_hand = build_deb(tmp_path / "by-hand", "uptend-demo", "1.1-3", "1.1")
    subprocess.run(
        ["dpkg", f"--root={root}", "--force-script-chrootless", "-i", str(by_hand)],
        check=True,
        capture_output=True,
    )
    assert installer.read_back() == PackageState("uptend-demo", "1.0-1", "1.1-3")  # drift


def test_system_dpkg_installs_a_harmless_package_then_it_is_purged(tmp_path: Path) -> None:
    """The one test against the machine's own dpkg: a package of our own, purged afterwards."""
    package = f"uptend-selftest-{secrets.token_hex(4)}"
    layout = _layout(tmp_path)  # no dpkg_root: the system's dpkg
    deb = build_deb(tmp_path, package, "1.0-1", "1.0")
    text = manifest_for("/", package) + f'[deb]\npackage = "{package}"\nversion = "1.0-1"\n'
    installer = DebInstaller(layout, "demo")
    try:
        installer.stage(_signed(deb, "1.0", text), deb, _Job())
        # the machine's dpkg is shared: wait for whoever else uses it (as the agent would)
        wait_until(lambda: installer.busy() is None, timeout_s=120, what="the dpkg lock")
        installer.activate("1.0")
        assert query(None, package) == "1.0-1 ii"
        assert installer.package_version("1.0") == f"{package} 1.0-1"
        assert Path(f"/opt/{package}/app.py").is_file()
    finally:
        subprocess.run(["dpkg", "--purge", package], capture_output=True, check=False)
    assert query(None, package) in ("", "un", "1.0-1 pn")
    assert not Path(f"/opt/{package}").exists()


def test_a_dpkg_lock_held_by_another_process_makes_the_installer_busy(tmp_path: Path) -> None:
    root = private_root(tmp_path / "root")
    layout = _layout(tmp_path)
    layout.config.write_text(f'{{"dpkg_root": "{root}"}}')
    installer = DebInstaller(layout, "demo")
    assert installer.busy() is None  # no lock file yet: nobody holds it
    for name in ("lock-frontend", "lock"):
        (root / "var/lib/dpkg" / name).touch()
        assert installer.busy() is None
        lock = HeldLock(root / "var/lib/dpkg" / name)
        try:
            assert installer.busy() == (
                f"the package manager is busy ({root}/var/lib/dpkg/{name} held by pid "
                f"{lock.proc.pid})"
            )
        finally:
            lock.release()
        assert installer.busy() is None


def test_the_kind_of_a_staged_version_is_read_once_until_its_manifest_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver asks at every tick and check-in: the manifest is parsed once per staging."""
    layout = _layout(tmp_path)
    where = layout.version_dir("demo", "1.0")
    where.mkdir(parents=True)
    deb = manifest_for("/", "uptend-demo") + '[deb]\npackage = "uptend-demo"\nversion = "1.0-1"\n'
    (where / MANIFEST_NAME).write_text(deb)
    reads: list[Path] = []

    def counted(version_dir: Path) -> Manifest:  # a spy: the real read, counted
        reads.append(version_dir)
        return read_manifest(version_dir)

    monkeypatch.setattr(installers, "read_manifest", counted)
    assert [installers.kind_of(layout, "demo", "1.0") for _ in range(3)] == ["deb"] * 3
    assert reads == [where]
    # the version dropped and staged again, as a bundle: a new file, read again
    staged = where / "staged.toml"
    staged.write_text(manifest_for("/", "uptend-demo"))
    staged.replace(where / MANIFEST_NAME)
    assert installers.kind_of(layout, "demo", "1.0") == "bundle"
    assert installers.kind_of(layout, "demo", "2.0") == "bundle"  # not staged: not remembered
    assert reads == [where, where]
