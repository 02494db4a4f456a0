"""Real Debian packages and a private dpkg root for the deb kind's tests (dpkg-deb, dpkg).

`private_root` makes an empty dpkg database the test owns (`dpkg --root`): the machine's own
packages are never touched. `build_deb` packs the fleet's test app under /opt/<package>/.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.fleet import APP_TEMPLATE, Fleet, Host

PACKAGE = "uptend-demo"


def private_root(where: Path) -> Path:
    admin = where / "var/lib/dpkg"
    for d in (admin / "info", admin / "updates", where / "var/log"):
        d.mkdir(parents=True, exist_ok=True)
    (admin / "status").touch()
    return where


def app_path(root: Path | str, package: str) -> str:
    return f"{str(root).rstrip('/')}/opt/{package}/app.py"


def build_deb(
    where: Path,
    package: str,
    deb_version: str,
    app_version: str,
    *,
    mode: str = "ok",
    depends: str = "",
    manifest: str | None = None,
    fields: str = "",
    postinst: str = "",
) -> Path:
    """<where>/<package>_<deb_version>/<package>.deb, with an uptend.toml beside it unless ''.

    `postinst`: the text of its maintainer script run by `dpkg -i` (none if '').
    """
    out = where / f"{package}_{deb_version}"
    tree = out / "tree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "opt" / package).mkdir(parents=True)
    code = APP_TEMPLATE.format(version=app_version, mode=mode, port=None)
    (tree / "opt" / package / "app.py").write_text(code)
    control = (
        f"Package: {package}\nVersion: {deb_version}\nArchitecture: all\n"
        f"Maintainer: uptend tests <tests@example.invalid>\nDescription: uptend test app\n"
    )
    control += f"Depends: {depends}\n" if depends else ""
    (tree / "DEBIAN" / "control").write_text(control + fields)
    if postinst:
        (tree / "DEBIAN" / "postinst").write_text(postinst)
        (tree / "DEBIAN" / "postinst").chmod(0o755)
    deb = out / f"{package}.deb"
    subprocess.run(
        ["dpkg-deb", "--build", "--root-owner-group", str(tree), str(deb)],
        check=True,
        capture_output=True,
    )
    if manifest is not None:
        (out / "uptend.toml").write_text(manifest)
    return deb


def manifest_for(root: Path | str, package: str, probation: float = 0.5) -> str:
    return (
        f'[app]\ncommand = ["{sys.executable}", "{app_path(root, package)}"]\n\n'
        f"[health]\nprobation = {probation}\n"
    )


def query(root: Path | None, package: str) -> str:
    """`<version> <status abbrev>` as dpkg-query says it ('' when unknown)."""
    where = [f"--root={root}"] if root is not None else []
    done = subprocess.run(
        ["dpkg-query", *where, "-W", "-f=${Version} ${db:Status-Abbrev}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def deb_host(fleet: Fleet, root: Path) -> Host:
    """A host enrolled with the fleet whose agent installs packages into `root`."""
    host = fleet.add_host()
    cfg = json.loads((host.dir / "agent.json").read_text())
    cfg["dpkg_root"] = str(root)
    (host.dir / "agent.json").write_text(json.dumps(cfg))
    return host


def publish_deb(fleet: Fleet, root: Path, version: str, deb_version: str, **kw: Any) -> Path:
    """Build the .deb of app `demo` `version` (sidecar manifest) and publish it."""
    package = kw.pop("package", PACKAGE)
    manifest = manifest_for(root, package, kw.pop("probation", 0.5))
    deb = build_deb(fleet.root / "debs", package, deb_version, version, manifest=manifest, **kw)
    fleet.cli("release", "publish", "demo", version, str(deb))
    return deb


LOCKER = """
import fcntl, sys
f = open(sys.argv[1], "a")
fcntl.lockf(f, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


class HeldLock:
    """A real fcntl write lock on `path`, held by another process (as dpkg or apt holds it)."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LOCKER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline() == b"locked\n"

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
