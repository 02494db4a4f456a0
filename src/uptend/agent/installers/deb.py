"""The `deb` kind: the verified .deb kept in versions/<v>/, installed with `dpkg -i`.

All but the dpkg calls is `installers/package.py`, shared with rpm. dpkg's root and database
are the agent's settings (`dpkg_root`, `dpkg_admindir` in agent.json: tests use a private
root; empty means the system's).
"""

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from uptend import debmeta
from uptend.agent.installers.package import PackageInstaller, Section, first_error
from uptend.agent.layout import Layout
from uptend.agent.preconditions import package_lock
from uptend.protocol.manifest import Manifest

PACKAGE_FILE = "package.deb"  # in versions/<v>/, beside the signed uptend.toml


@dataclass(frozen=True, slots=True)
class Dpkg:
    """How to call dpkg and dpkg-query on this host (the system's, or a private root)."""

    root: str = ""
    admindir: str = ""
    name = "dpkg"
    verb = "dpkg -i"
    file = PACKAGE_FILE
    table = "deb"

    @classmethod
    def of(cls, layout: Layout) -> "Dpkg":
        try:
            raw = json.loads(layout.config.read_text())
        except (OSError, ValueError):
            return cls()
        return cls(str(raw.get("dpkg_root") or ""), str(raw.get("dpkg_admindir") or ""))

    def _where(self) -> list[str]:
        args = [f"--root={self.root}"] if self.root else []
        return args + ([f"--admindir={self.admindir}"] if self.admindir else [])

    def command(self, *args: str) -> list[str]:
        forced = ["--force-not-root"] if os.geteuid() != 0 else []
        if self.root:  # no chroot into a private root: it has no shell
            forced.append("--force-script-chrootless")
        return ["dpkg", *self._where(), *forced, *args]

    @property
    def database(self) -> Path:
        if self.admindir:
            return Path(self.admindir)
        return Path(self.root or "/") / "var/lib/dpkg"

    def section(self, manifest: Manifest) -> Section | None:
        return manifest.deb

    def fields(self, package: Path) -> dict[str, str]:
        return debmeta.control_fields(package)

    def check(self, fields: dict[str, str], manifest: Manifest, where: str) -> None:
        debmeta.check(fields, manifest, where)

    def install(self, package: Path, section: Section) -> list[str]:
        return self.command("-i", str(package))  # dpkg -i of an older file downgrades

    def busy(self) -> str | None:
        return package_lock(self.database)

    def why(self, output: str) -> str:
        return first_error(output, "dpkg:")

    def installed(self, package: str) -> str | None:
        """The version dpkg has of `package` if it is fully installed, else None (never raises)."""
        argv = ["dpkg-query", *self._where(), "-W", "-f=${Version} ${db:Status-Abbrev}", package]
        try:
            done = subprocess.run(argv, capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        version, _, status = done.stdout.decode("utf-8", "replace").partition(" ")
        return version if done.returncode == 0 and status.strip() == "ii" else None


class DebInstaller(PackageInstaller):
    kind = "deb"

    def __init__(self, layout: Layout, app: str) -> None:
        self.dpkg = Dpkg.of(layout)
        super().__init__(layout, app, self.dpkg)
