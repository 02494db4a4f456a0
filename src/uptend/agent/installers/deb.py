"""The `deb` kind: the verified .deb kept in versions/<v>/, installed with `dpkg -i`.

Patchman's way (the system's own package manager, our own package only, never a new
dependency: `dpkg -i` does not fetch any, so a missing one fails the install), under the
bundle's guarantees: the package is a signed TUF target, its name is checked against the one
the app declares before dpkg runs (never anything else), and the previous version's .deb
stays in versions/ so that a rollback is `dpkg -i` of the older file. `current` points at the
version whose package dpkg installed last: it is switched only after dpkg succeeded, so a
kill between the two repeats the (idempotent) `dpkg -i`.

dpkg's root and database are the agent's settings (`dpkg_root`, `dpkg_admindir` in
agent.json: tests use a private root; empty means the system's).
"""

import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from uptend import debmeta
from uptend.agent import files
from uptend.agent.crashpoints import crashpoint
from uptend.agent.installers.base import InstallFailedError, Say, Signed, ignore
from uptend.agent.installers.bundle import BundleInstaller
from uptend.agent.layout import Layout
from uptend.agent.observe import Span, no_span
from uptend.agent.preconditions import package_lock
from uptend.agent.supervisor import read_manifest
from uptend.agent.worker import Context
from uptend.errors import ConfigError
from uptend.protocol.manifest import MANIFEST_NAME, DebSection, parse_manifest

PACKAGE_FILE = "package.deb"  # in versions/<v>/, beside the signed uptend.toml
DPKG_TIMEOUT_S = 600.0
TAIL_LINES = 30


@dataclass(frozen=True, slots=True)
class Dpkg:
    """How to call dpkg and dpkg-query on this host (the system's, or a private root)."""

    root: str = ""
    admindir: str = ""

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

    def installed(self, package: str) -> str | None:
        """The version dpkg has of `package` if it is fully installed, else None (never raises)."""
        argv = ["dpkg-query", *self._where(), "-W", "-f=${Version} ${db:Status-Abbrev}", package]
        try:
            done = subprocess.run(argv, capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        version, _, status = done.stdout.decode("utf-8", "replace").partition(" ")
        return version if done.returncode == 0 and status.strip() == "ii" else None


def declared(where: Path) -> DebSection:
    """The [deb] section of the version in `where`; ConfigError if it has none."""
    deb = read_manifest(where).deb
    if deb is None:
        raise ConfigError(f"{where / MANIFEST_NAME} has no [deb] section")
    return deb


class DebInstaller(BundleInstaller):
    kind = "deb"

    def __init__(self, layout: Layout, app: str) -> None:
        super().__init__(layout, app)
        self.dpkg = Dpkg.of(layout)

    def _established(self) -> str | None:
        """The package the installed version of this app declares (None: none is, or a bundle)."""
        current = self.installed()
        if current is None:
            return None
        try:
            deb = read_manifest(self.layout.version_dir(self.app, current)).deb
        except ConfigError:
            return None
        return None if deb is None else deb.package

    def _check_package(self, deb: Path, wanted: DebSection) -> None:
        """Refuse, before dpkg runs, a file that is not the one package this app declares."""
        found = debmeta.control_fields(deb).get("Package", "")
        if found != wanted.package:
            raise ConfigError(
                f"refused: {deb.name} is package {found!r}, the release declares {wanted.package!r}"
            )
        established = self._established()
        if established is not None and established != wanted.package:
            raise ConfigError(
                f"refused: {self.app} is package {established!r}; this release would install "
                f"{wanted.package!r}, which it may not"
            )

    def stage(self, signed: Signed, artifact: Path, job: Context, span: Span = no_span) -> None:
        version = signed.custom.version
        final = self.layout.version_dir(self.app, version)
        if final.is_dir():
            return
        work = self.layout.staging(self.app) / f"{version}.unpack"
        files.remove_tree(work)
        try:
            with span("verify"), artifact.open("rb") as f:  # TOCTOU: check again what we keep
                signed.info.verify_length_and_hashes(f)
            text = (signed.custom.manifest or "").encode()
            manifest = parse_manifest(text, where=f"the signed manifest of {signed.name}")
            if manifest.deb is None:
                raise ConfigError(f"the signed manifest of {signed.name} has no [deb] section")
            fields = debmeta.control_fields(artifact)
            self._check_package(artifact, manifest.deb)
            debmeta.check(fields, manifest, signed.name)
            job.check()
            work.mkdir(mode=0o700)
            shutil.copyfile(artifact, work / PACKAGE_FILE)
            (work / MANIFEST_NAME).write_bytes(text)
            with span("sync"):
                files.syncfs(work)
            work.rename(final)  # docs/architecture.md promise 2: whole or not at all
        except BaseException:
            files.remove_tree(work)
            raise
        files.fsync_dir(final.parent)
        crashpoint("unpack:renamed")

    def busy(self) -> str | None:
        return package_lock(self.dpkg.database)

    def activate(self, version: str, say: Say = ignore) -> None:
        where = self.layout.version_dir(self.app, version)
        package = where / PACKAGE_FILE
        try:
            self._check_package(package, declared(where))
        except ConfigError as e:
            raise InstallFailedError(e.message) from None
        argv = self.dpkg.command("-i", str(package))
        say(f"running {shlex.join(argv)}")
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=DPKG_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            output = (e.output or b"").decode("utf-8", "replace")
            self._keep_output(version, output)
            raise InstallFailedError(
                f"dpkg -i took over {DPKG_TIMEOUT_S:g} s", _tail(output)
            ) from None
        except OSError as e:
            raise InstallFailedError(f"dpkg could not run: {e}") from None
        output = done.stdout.decode("utf-8", "replace")
        for line in output.splitlines():
            say(f"dpkg: {line}")
        if done.returncode != 0:
            self._keep_output(version, output)  # the report's log tail, after a crash too
            errors = [ln.strip() for ln in output.splitlines() if ln.startswith("dpkg:")]
            why = errors[0] if errors else (output.strip().splitlines() or [""])[-1]
            raise InstallFailedError(
                f"dpkg -i {version} exited with code {done.returncode}: {why}", _tail(output)
            )
        say(f"dpkg reports {self.package_version(version) or 'nothing installed'}")
        crashpoint("dpkg:installed")
        files.point_current_at(self.layout.app_dir(self.app), version)

    def read_back(self) -> str:
        """`deb <package> <version>` as dpkg reports it, or the drift from the expected one."""
        current = self.installed()
        if current is None:
            return ""
        try:
            deb = declared(self.layout.version_dir(self.app, current))
        except ConfigError:
            return ""
        found = self.dpkg.installed(deb.package)
        if found is None:
            return f"package {deb.package} is not installed, expected {deb.version}"
        if found != deb.version:
            return f"installed by hand: {found}, expected {deb.version}"
        return f"deb {deb.package} {found}"

    def _keep_output(self, version: str, output: str) -> None:
        log = self.layout.app_log(self.app, version)
        with open(log, "a", opener=files.private_opener) as f:
            f.write(output)

    def package_version(self, version: str) -> str | None:
        """`package version` as dpkg reports it for the package of `version`, if installed."""
        try:
            deb = declared(self.layout.version_dir(self.app, version))
        except ConfigError:
            return None
        found = self.dpkg.installed(deb.package)
        return None if found is None else f"{deb.package} {found}"


def _tail(output: str) -> str:
    return "\n".join(output.splitlines()[-TAIL_LINES:])
