"""The `agent` kind: the agent itself, a signed wheelhouse, staged beside the running one.

`stage` (in the worker child: never the process being replaced) unpacks the wheelhouse,
builds `PREFIX/versions/<v>` from it offline (renamed in whole), and qualifies it: the new
version runs its trial (`python -m uptend.agent.selftrial`: load its code, read the data
dir, a real check-in, a no-op decision cycle, exit 0 within `TRIAL_TIMEOUT_S`); only a
qualified version is staged. `activate` writes the launcher's pointer (`state/self.json`)
and asks the running agent to hand over (exec the launcher, apps left running); the
launcher falls back by itself if the new version never checks in (agent/launcher.py).
"""

import os
import secrets
import subprocess
from pathlib import Path

from uptend import __version__
from uptend.agent import files, launcher, selfupdate, selfupdate_env
from uptend.agent.crashpoints import ARM_ENV, WORKER_ENV, crashpoint
from uptend.agent.installers.base import PackageState, Say, Signed, ignore
from uptend.agent.layout import Layout
from uptend.agent.observe import Span, no_span
from uptend.agent.worker import Context
from uptend.errors import ConfigError
from uptend.protocol.manifest import HealthSection

TRIAL_TIMEOUT_S = 120.0
TRIAL_ENV = "UPTEND_AGENT_TRIAL"  # set in the trial: a version can tell it is on trial


class AgentInstaller:
    kind = "agent"
    activates_in_child = False  # the launcher's pointer: instant

    def __init__(self, layout: Layout, app: str) -> None:
        self.layout = layout
        self.app = app
        # not installed (`uptend agent run DIR`): nothing staged, nothing to clean; the
        # runner refuses the kind (decide) before any stage
        self.prefix = selfupdate.prefix_of(layout) or layout.root / "not-installed"

    def _qualified(self, version: str) -> Path:
        return self.layout.app_dir(self.app) / f"qualified-{version}"

    def staged(self, version: str) -> bool:
        return launcher.complete(self.prefix, version) and self._qualified(version).exists()

    def stage(self, signed: Signed, artifact: Path, job: Context, span: Span = no_span) -> None:
        from uptend import archive  # in the worker child only

        version = signed.custom.version
        if self.staged(version):
            return
        work = self.layout.staging(self.app) / f"{version}.wheels"
        files.remove_tree(work)
        try:
            with span("verify"), artifact.open("rb") as f:  # TOCTOU: check again what we unpack
                signed.info.verify_length_and_hashes(f)
            with span("unpack"):
                archive.unpack(
                    artifact,
                    signed.custom.format,
                    work,
                    max_bytes=signed.custom.unpacked_size,
                    max_files=signed.custom.files,
                )
            job.check()
            wheels = work / "wheels"
            if selfupdate_env.wheel_version(wheels) != version:
                raise ConfigError(f"the wheelhouse of agent {version} holds another version")
            with span("build"):
                running = self.prefix / "versions" / __version__
                selfupdate_env.build_env(wheels, self.prefix / "versions", version, running)
            crashpoint("self:built")
            job.check()
            with span("trial"):
                self.trial(version)
            crashpoint("self:trial")
            files.write_atomically(self._qualified(version), b"")
        finally:
            files.remove_tree(work)

    def trial(self, version: str) -> None:
        """Run `version` in its trial mode; a ConfigError (the release's fault) if it fails."""
        nonce = secrets.token_hex(8)
        python = launcher.python_of(self.prefix, version)
        env = {k: v for k, v in os.environ.items() if k not in (ARM_ENV, WORKER_ENV)}
        env[TRIAL_ENV] = "1"
        argv = [str(python), "-m", "uptend.agent.selftrial", str(self.layout.root), nonce]
        try:
            done = subprocess.run(
                argv, env=env, capture_output=True, text=True, timeout=TRIAL_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            why = f"agent {version} did not finish its trial in {TRIAL_TIMEOUT_S:g}s"
            raise ConfigError(why) from None
        said = done.stdout.strip().splitlines()
        if done.returncode != 0 or not said or said[-1] != f"trial ok {version} {nonce}":
            out = (done.stderr or done.stdout).strip()[-1500:]
            raise ConfigError(f"agent {version} failed its trial (exit {done.returncode}): {out}")

    def activate(self, version: str, say: Say = ignore) -> None:
        """Point the launcher at `version`; ask for a handover unless it is the one running."""
        state = launcher.load(self.prefix)
        if state["current"] != version:
            state["bad"].pop(version, None)  # an operator's retry
            state.update(current=version, boots=0)
            launcher.save(self.prefix, state)
        crashpoint("self:pointed")
        if version != __version__:
            selfupdate.request_handover(version)

    def busy(self) -> str | None:
        return None  # the switch is a pointer write and an exec: nobody to wait for

    def read_back(self) -> PackageState | None:
        return None  # the launcher's pointer is the whole truth

    def deactivate(self) -> None:
        state = launcher.load(self.prefix)
        self.activate(str(state["good"]))

    def installed(self) -> str | None:
        current = launcher.load(self.prefix)["current"]
        return None if current is None else str(current)

    def health(self, version: str) -> tuple[HealthSection, Path]:
        # judged by the driver: this version runs (same process) and has checked in
        return HealthSection(probation=0.0), self.prefix / "versions" / version

    def cleanup(self, keep: set[str | None]) -> None:
        staging = self.layout.staging(self.app)
        for leftover in list(staging.iterdir()) if staging.is_dir() else []:
            files.remove_tree(leftover)
        state = launcher.load(self.prefix)
        keep = {*keep, state["current"], state["good"], __version__}
        versions = self.prefix / "versions"
        if not versions.is_dir():
            return
        builds = [p for p in versions.iterdir() if p.name.startswith(".")]
        for leftover in builds:
            files.remove_tree(leftover)
        others = sorted(
            (p for p in versions.iterdir() if p.name not in keep and not p.name.startswith(".")),
            key=lambda p: p.stat().st_mtime_ns,
        )
        for old in others[:-1]:  # keep one previous version to go back to
            doomed = versions / f".{old.name}.removing"
            old.rename(doomed)
            files.fsync_dir(versions)
            files.remove_tree(doomed)
            self._qualified(old.name).unlink(missing_ok=True)
