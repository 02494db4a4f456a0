"""Real rpm packages and a private rpm database for the rpm kind's tests (rpmbuild, rpm).

`private_rpm_root` makes an empty rpm database under a root the test owns (`rpm --root`,
`--dbpath`): the machine's own rpm database, if any, is never touched. `build_rpm` packs the
fleet's test app under /opt/<package>/ with rpmbuild (no automatic requirements: the only
ones are those the test names).
"""

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.support.debs import PACKAGE, manifest_for
from tests.support.fleet import APP_TEMPLATE, Fleet, Host

DBPATH = "/var/lib/rpm"

SPEC = """\
Name: {package}
Version: {version}
Release: {release}
Summary: uptend test app
License: MIT
BuildArch: noarch
AutoReqProv: no
{requires}
%description
uptend test app

%install
mkdir -p %{{buildroot}}/opt/{package}
cp {source} %{{buildroot}}/opt/{package}/app.py

%files
/opt/{package}/app.py
"""


def rpm_argv(root: Path, *args: str) -> list[str]:
    return ["rpm", f"--root={root}", f"--dbpath={DBPATH}", *args]


def private_rpm_root(where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(rpm_argv(where, "--initdb"), check=True, capture_output=True)
    return where


def build_rpm(
    where: Path,
    package: str,
    rpm_version: str,
    app_version: str,
    *,
    mode: str = "ok",
    requires: str = "",
    manifest: str | None = None,
) -> Path:
    """<where>/<package>_<rpm_version>/<package>.rpm, with an uptend.toml beside it unless None."""
    version, _, release = rpm_version.rpartition("-")
    out = where / f"{package}_{rpm_version}"
    (out / "top").mkdir(parents=True)
    source = out / "app.py"
    source.write_text(APP_TEMPLATE.format(version=app_version, mode=mode, port=None))
    spec = out / f"{package}.spec"
    spec.write_text(
        SPEC.format(
            package=package,
            version=version,
            release=release,
            requires=f"Requires: {requires}" if requires else "",
            source=source,
        )
    )
    subprocess.run(
        [
            "rpmbuild",
            "-bb",
            "--define",
            f"_topdir {out / 'top'}",
            "--define",
            f"_rpmdir {out}",
            "--define",
            "_build_name_fmt %%{NAME}.rpm",
            str(spec),
        ],
        check=True,
        capture_output=True,
    )
    if manifest is not None:
        (out / "uptend.toml").write_text(manifest)
    return out / f"{package}.rpm"


def rpm_query(root: Path, package: str) -> str:
    """The EVR rpm has of `package` ('' when it is not installed)."""
    done = subprocess.run(
        rpm_argv(root, "-q", "--qf", "%{EVR}\\n", package),
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def rpm_host(fleet: Fleet, root: Path) -> Host:
    """A host enrolled with the fleet whose agent installs packages into `root`."""
    host = fleet.add_host()
    cfg = json.loads((host.dir / "agent.json").read_text())
    cfg["rpm_root"], cfg["rpm_dbpath"] = str(root), DBPATH
    (host.dir / "agent.json").write_text(json.dumps(cfg))
    return host


def publish_rpm(fleet: Fleet, root: Path, version: str, rpm_version: str, **kw: Any) -> Path:
    """Build the .rpm of app `demo` `version` (sidecar manifest) and publish it."""
    package = kw.pop("package", PACKAGE)
    manifest = manifest_for(root, package, kw.pop("probation", 0.5))
    rpm = build_rpm(fleet.root / "rpms", package, rpm_version, version, manifest=manifest, **kw)
    fleet.cli("release", "publish", "demo", version, str(rpm))
    return rpm
