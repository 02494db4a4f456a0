"""The `command` kind: the vendor's installer, run by its own command (Winsitter's MSI).

The signed target is the installer file; its manifest's `[installer]` says how to run it
(`command`, with `{file}` for the verified file kept in versions/<v>/), for how long, and
what its exit codes mean: `success`, `reboot` (installed, a reboot finishes it), `busy`
(another installation runs: deferred, tried again, never a failure); anything else failed,
and the previous version's installer is run again to roll back. Its output goes into the
attempt log, and on failure into the report.
"""

import os
import signal
import subprocess
from pathlib import Path

from uptend.agent import files
from uptend.agent.crashpoints import crashpoint
from uptend.agent.installers.base import (
    InstallBusyError,
    InstallFailedError,
    Say,
    Signed,
    ignore,
    tail,
)
from uptend.agent.installers.bundle import BundleInstaller
from uptend.agent.observe import Span, no_span
from uptend.agent.supervisor import read_manifest
from uptend.agent.worker import Context
from uptend.errors import ConfigError
from uptend.protocol.manifest import MANIFEST_NAME, InstallerSection, Manifest


def _section(where: Path) -> InstallerSection:
    section = read_manifest(where).installer
    if section is None:
        raise ConfigError(f"{where / MANIFEST_NAME} has no [installer] section")
    return section


class CommandInstaller(BundleInstaller):
    kind = "command"
    activates_in_child = True  # the vendor's installer, up to its timeout

    def stage(self, signed: Signed, artifact: Path, job: Context, span: Span = no_span) -> None:
        def keep(manifest: Manifest, artifact: Path) -> tuple[str, Path]:
            if manifest.installer is None:
                raise ConfigError(f"the signed manifest of {signed.name} has no [installer]")
            return manifest.installer.file, artifact

        self._stage_kept(signed, artifact, job, span, keep, mode=0o700)  # it is run

    def activate(self, version: str, say: Say = ignore) -> None:
        where = self.layout.version_dir(self.app, version)
        try:
            section = _section(where)
        except ConfigError as e:
            raise InstallFailedError(e.message) from None
        installer = str(where / section.file)
        argv = [arg.replace("{file}", installer) for arg in section.command]
        say(f"running {' '.join(argv)} (timeout {section.timeout:g} s)")
        code, output = self._run(argv, where, section.timeout)
        for line in output.splitlines():
            say(f"installer: {line}")
        if code is None:
            self._keep_output(version, output)
            raise InstallFailedError(
                f"the installer of {version} took over {section.timeout:g} s and was killed",
                tail(output),
            )
        if code in section.busy:
            raise InstallBusyError(f"the installer of {version} is busy (exit code {code})")
        if code not in section.success and code not in section.reboot:
            self._keep_output(version, output)
            raise InstallFailedError(
                f"the installer of {version} exited with code {code}", tail(output)
            )
        if code in section.reboot:
            say(f"installed; a reboot is required to finish (exit code {code})")
        crashpoint("dpkg:installed")
        files.point_current_at(self.layout.app_dir(self.app), version)

    @staticmethod
    def _run(argv: list[str], cwd: Path, timeout: float) -> tuple[int | None, str]:
        """Exit code (None: killed at the timeout, with its whole process group) and output."""
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as e:
            return 127, f"the installer could not run: {e}"
        try:
            out, _ = proc.communicate(timeout=timeout)
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            code = None
        return code, out.decode("utf-8", "replace")
