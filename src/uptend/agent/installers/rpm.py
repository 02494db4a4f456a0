"""The `rpm` kind: the verified .rpm kept in versions/<v>/, installed with `rpm -U`.

All but the rpm calls is `installers/package.py`, shared with deb. A rollback (or any
install of a version older than the one rpm has) is `rpm -U --oldpackage`: rpm itself
compares the versions; `--replacepkgs` makes the install idempotent (a repeat after a kill
reinstalls what is there). rpm's root and database are the agent's settings (`rpm_root`,
`rpm_dbpath` in agent.json: tests use a private root; the database path is always given,
since Debian's rpm defaults to one in the user's home).
"""

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from uptend import rpmmeta
from uptend.agent.installers.package import PackageInstaller, Section, first_error
from uptend.agent.layout import Layout
from uptend.agent.preconditions import lock_holder
from uptend.protocol.manifest import Manifest

PACKAGE_FILE = "package.rpm"  # in versions/<v>/, beside the signed uptend.toml
SYSTEM_DBPATH = "/var/lib/rpm"
_EVR = re.compile(r"^[A-Za-z0-9._+~^:-]{1,130}$")  # what may go into rpm's --eval unquoted


@dataclass(frozen=True, slots=True)
class Rpm:
    """How to call rpm on this host (the system's, or a private root)."""

    root: str = ""
    dbpath: str = SYSTEM_DBPATH  # inside `root`, as rpm takes it
    name = "rpm"
    verb = "rpm -U"
    file = PACKAGE_FILE
    table = "rpm"

    @classmethod
    def of(cls, layout: Layout) -> "Rpm":
        try:
            raw = json.loads(layout.config.read_text())
        except (OSError, ValueError):
            return cls()
        return cls(str(raw.get("rpm_root") or ""), str(raw.get("rpm_dbpath") or SYSTEM_DBPATH))

    def command(self, *args: str) -> list[str]:
        where = [f"--root={self.root}"] if self.root else []
        return ["rpm", *where, f"--dbpath={self.dbpath}", *args]

    @property
    def lock(self) -> Path:
        """The transaction lock rpm holds (fcntl, for writing) while it changes its database."""
        return Path(self.root or "/") / self.dbpath.lstrip("/") / ".rpm.lock"

    def section(self, manifest: Manifest) -> Section | None:
        return manifest.rpm

    def fields(self, package: Path) -> dict[str, str]:
        return rpmmeta.header(package)

    def check(self, fields: dict[str, str], manifest: Manifest, where: str) -> None:
        rpmmeta.check(fields, manifest, where)

    def install(self, package: Path, section: Section) -> list[str]:
        found = self.installed(section.package)
        older = found is not None and self._newer(found, section.version)
        # --replacepkgs: after a kill between rpm and `current`, the repeat must succeed
        flags = ["--oldpackage"] if older else []
        return self.command("-U", *flags, "--replacepkgs", str(package))

    def _newer(self, installed: str, wanted: str) -> bool:
        """Whether rpm holds `installed` above `wanted` (unsure: yes, --oldpackage allows both)."""
        if not (_EVR.match(installed) and _EVR.match(wanted)):
            return True
        lua = f"%{{lua:print(rpm.vercmp('{installed}', '{wanted}'))}}"
        try:
            done = subprocess.run(
                ["rpm", "--eval", lua], capture_output=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return True
        return done.stdout.strip() != b"-1" and done.stdout.strip() != b"0"

    def busy(self) -> str | None:
        if (pid := lock_holder(self.lock)) is not None:
            return f"the package manager is busy ({self.lock} held by pid {pid})"
        return None

    def why(self, output: str) -> str:
        return first_error(output, "error:")

    def installed(self, package: str) -> str | None:
        """The version rpm has of `package` (several: all, comma-separated), or None."""
        argv = self.command("-q", "--qf", "%{EVR}\\n", package)
        try:
            done = subprocess.run(argv, capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        versions = done.stdout.decode("utf-8", "replace").split()
        return ", ".join(versions) if done.returncode == 0 and versions else None


class RpmInstaller(PackageInstaller):
    kind = "rpm"

    def __init__(self, layout: Layout, app: str) -> None:
        super().__init__(layout, app, Rpm.of(layout))
