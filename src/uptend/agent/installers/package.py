"""A system package manager's kind (deb, rpm): Patchman's way, under the bundle's guarantees.

The system's own package manager installs our own package only, never a new dependency
(`dpkg -i`, `rpm -U` fetch none: a missing one fails the install). The package is a signed
TUF target; its name is checked against the one the app declares before the tool runs
(never anything else), and the previous version's file stays in versions/ so that a
rollback installs the older file again. `current` points at the version whose package was
installed last: it is switched only after the tool succeeded, so a kill between the two
repeats the (idempotent) install. Each `Tool` (installers/deb.py, rpm.py) says how to call
its package manager; everything else is here, once.
"""

import shlex
import subprocess
from pathlib import Path
from typing import Protocol

from uptend.agent import files
from uptend.agent.crashpoints import crashpoint
from uptend.agent.installers.base import (
    InstallFailedError,
    PackageState,
    Say,
    Signed,
    ignore,
    tail,
)
from uptend.agent.installers.bundle import BundleInstaller
from uptend.agent.layout import Layout
from uptend.agent.observe import Span, no_span
from uptend.agent.supervisor import read_manifest
from uptend.agent.worker import Context
from uptend.errors import ConfigError
from uptend.protocol.manifest import MANIFEST_NAME, DebSection, Manifest, RpmSection

TIMEOUT_S = 600.0
Section = DebSection | RpmSection


class Tool(Protocol):
    """How one package manager is called on this host (the system's, or a private root)."""

    name: str  # "dpkg": the prefix of its lines in the attempt log
    verb: str  # "dpkg -i": how its install is named in a failure
    file: str  # the package's name in versions/<v>/
    table: str  # its manifest section: "deb", "rpm"

    def section(self, manifest: Manifest) -> Section | None: ...

    def fields(self, package: Path) -> dict[str, str]:
        """`Package`, `Version` of a package file; ConfigError when the tool cannot read it."""
        ...

    def check(self, fields: dict[str, str], manifest: Manifest, where: str) -> None: ...

    def install(self, package: Path, section: Section) -> list[str]:
        """The argv that installs `package` (a downgrade too: a rollback is one)."""
        ...

    def installed(self, package: str) -> str | None:
        """The version the tool has of `package` if installed, else None (never raises)."""
        ...

    def busy(self) -> str | None: ...

    def why(self, output: str) -> str:
        """The line of the tool's output that says why it failed."""
        ...


class PackageInstaller(BundleInstaller):
    tool: Tool
    activates_in_child = True  # dpkg -i, rpm -U: up to TIMEOUT_S

    def __init__(self, layout: Layout, app: str, tool: Tool) -> None:
        super().__init__(layout, app)
        self.tool = tool

    def declared(self, where: Path) -> Section:
        """The package section of the version in `where`; ConfigError if it has none."""
        section = self.tool.section(read_manifest(where))
        if section is None:
            raise ConfigError(f"{where / MANIFEST_NAME} has no [{self.tool.table}] section")
        return section

    def _established(self) -> str | None:
        """The package the installed version of this app declares (None: none is, or a bundle)."""
        current = self.installed()
        if current is None:
            return None
        try:
            manifest = read_manifest(self.layout.version_dir(self.app, current))
        except ConfigError:
            return None
        section = manifest.deb or manifest.rpm  # a package kind, whichever manager
        return None if section is None else section.package

    def _check_package(self, package: Path, wanted: Section) -> None:
        """Refuse, before the tool runs, a file that is not the one package this app declares."""
        found = self.tool.fields(package).get("Package", "")
        if found != wanted.package:
            raise ConfigError(
                f"refused: {package.name} is package {found!r}, the release declares "
                f"{wanted.package!r}"
            )
        established = self._established()
        if established is not None and established != wanted.package:
            raise ConfigError(
                f"refused: {self.app} is package {established!r}; this release would install "
                f"{wanted.package!r}, which it may not"
            )

    def stage(self, signed: Signed, artifact: Path, job: Context, span: Span = no_span) -> None:
        def keep(manifest: Manifest, artifact: Path) -> tuple[str, Path]:
            section = self.tool.section(manifest)
            if section is None:
                raise ConfigError(
                    f"the signed manifest of {signed.name} has no [{self.tool.table}]"
                )
            package = self._package_file(signed, manifest, artifact, job)
            fields = self.tool.fields(package)
            self._check_package(package, section)
            self.tool.check(fields, manifest, signed.name)
            return self.tool.file, package

        self._stage_kept(signed, artifact, job, span, keep)

    def _package_file(
        self, signed: Signed, manifest: Manifest, artifact: Path, job: Context
    ) -> Path:
        """The package to check and keep: the verified target itself (apt: its download)."""
        return artifact

    def busy(self) -> str | None:
        return self.tool.busy()

    def activate(self, version: str, say: Say = ignore) -> None:
        where = self.layout.version_dir(self.app, version)
        package = where / self.tool.file
        try:
            section = self.declared(where)
            self._check_package(package, section)
        except ConfigError as e:
            raise InstallFailedError(e.message) from None
        argv = self.tool.install(package, section)
        say(f"running {shlex.join(argv)}")
        verb = f"{self.tool.verb} {version}"
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            output = (e.output or b"").decode("utf-8", "replace")
            self._keep_output(version, output)
            raise InstallFailedError(f"{verb} took over {TIMEOUT_S:g} s", tail(output)) from None
        except OSError as e:
            raise InstallFailedError(f"{self.tool.name} could not run: {e}") from None
        output = done.stdout.decode("utf-8", "replace")
        for line in output.splitlines():
            say(f"{self.tool.name}: {line}")
        if done.returncode != 0:
            self._keep_output(version, output)  # the report's log tail, after a crash too
            why = self.tool.why(output)
            raise InstallFailedError(
                f"{verb} exited with code {done.returncode}: {why}", tail(output)
            )
        say(f"{self.tool.name} reports {self.package_version(version) or 'nothing installed'}")
        crashpoint("dpkg:installed")
        files.point_current_at(self.layout.app_dir(self.app), version)

    def read_back(self) -> PackageState | None:
        """The installed version's package as the tool reports it (drift shows: by hand)."""
        current = self.installed()
        if current is None:
            return None
        try:
            section = self.declared(self.layout.version_dir(self.app, current))
        except ConfigError:
            return None
        return PackageState(section.package, section.version, self.tool.installed(section.package))

    def package_version(self, version: str) -> str | None:
        """`package version` as the tool reports it for the package of `version`, if installed."""
        try:
            section = self.declared(self.layout.version_dir(self.app, version))
        except ConfigError:
            return None
        found = self.tool.installed(section.package)
        return None if found is None else f"{section.package} {found}"


def first_error(output: str, prefix: str) -> str:
    """The first line starting with `prefix`, else the last line said."""
    errors = [ln.strip() for ln in output.splitlines() if ln.startswith(prefix)]
    return errors[0] if errors else (output.strip().splitlines() or [""])[-1]
