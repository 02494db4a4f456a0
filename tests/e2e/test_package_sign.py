"""`uptend release sign` for package releases: the offline keys sign a .deb and an .rpm.

The workstation signs each package with its manifest (the sidecar, [deb]/[rpm] filled from
the package) and writes that manifest beside the signed copy, so that `release publish OUT`
sends the very text that was signed; the server checks it and the agent installs it.
"""

import json
from functools import partial
from pathlib import Path

from tests.support.debs import PACKAGE, build_deb, manifest_for, private_root, query
from tests.support.fleet import Fleet, Host, wait_until
from tests.support.rpms import DBPATH, build_rpm, private_rpm_root, rpm_query


def _runs(host: Host, version: str) -> bool:
    return host.running_version("demo") == version


def test_offline_keys_sign_a_deb_and_an_rpm_release(fleet: Fleet, tmp_path: Path) -> None:
    keys = fleet.root / "workstation-keys"
    fleet.json("keys", "export-targets", str(fleet.server_dir), str(keys))
    dpkg_root = private_root(tmp_path / "dpkg-root")
    rpm_root = private_rpm_root(tmp_path / "rpm-root")
    fleet.assign("demo")
    host = fleet.add_host()
    cfg = json.loads((host.dir / "agent.json").read_text())
    cfg |= {"dpkg_root": str(dpkg_root), "rpm_root": str(rpm_root), "rpm_dbpath": DBPATH}
    (host.dir / "agent.json").write_text(json.dumps(cfg))
    host.start()

    deb = build_deb(tmp_path, PACKAGE, "1.0-1", "1.0", manifest=manifest_for(dpkg_root, PACKAGE))
    rpm = build_rpm(tmp_path, PACKAGE, "2.0-1", "2.0", manifest=manifest_for(rpm_root, PACKAGE))
    for version, package in (("1.0", deb), ("2.0", rpm)):
        out = fleet.root / f"signed-{version}"
        signed = fleet.json(
            "release", "sign", "demo", version, str(package), "--keys", str(keys),
            "--out", str(out), "--server", fleet.url,
        )  # fmt: skip
        assert signed["format"] == package.suffix[1:]
        kept = (out / "uptend.toml").read_text()
        assert f'[{package.suffix[1:]}]\npackage = "{PACKAGE}"\nversion = "{version}-1"' in kept
        fleet.cli("release", "publish", "demo", version, str(out))
        wait_until(partial(_runs, host, version), what=f"{version} running")
    assert query(dpkg_root, PACKAGE) == "1.0-1 ii"
    assert rpm_query(rpm_root, PACKAGE) == "2.0-1"
    assert [r["version"] for r in fleet.json("release", "list", "demo")] == ["1.0", "2.0"]
    assert host.stop() == 0
