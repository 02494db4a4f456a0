"""The `bundle` kind: an archive unpacked into versions/<v>, `current` pointed at it.

Its staging and clean-up are the other kinds' too: `_stage_kept` is how a kind that keeps
the verified file itself (deb, rpm, command) stages it beside its signed manifest.
"""

import shutil
from collections.abc import Callable
from pathlib import Path

from uptend.agent import files
from uptend.agent.crashpoints import crashpoint
from uptend.agent.installers.base import PackageState, Say, Signed, ignore
from uptend.agent.layout import Layout
from uptend.agent.observe import Span, no_span
from uptend.agent.supervisor import read_manifest
from uptend.agent.worker import Context
from uptend.errors import ConfigError
from uptend.protocol.manifest import MANIFEST_NAME, HealthSection, Manifest, parse_manifest

# checks the signed manifest against the verified file; returns the name to keep under, and
# the file to keep (the artifact itself, or what it led to: apt's download)
Keep = Callable[[Manifest, Path], tuple[str, Path]]


class BundleInstaller:
    kind = "bundle"
    activates_in_child = False  # a symlink switch: instant

    def __init__(self, layout: Layout, app: str) -> None:
        self.layout = layout
        self.app = app

    def staged(self, version: str) -> bool:
        # renamed in as the last step of `stage`: complete by construction
        return self.layout.version_dir(self.app, version).is_dir()

    def stage(self, signed: Signed, artifact: Path, job: Context, span: Span = no_span) -> None:
        from uptend import archive  # in the worker child only

        version = signed.custom.version
        final = self.layout.version_dir(self.app, version)
        if final.is_dir():
            return
        work = self.layout.staging(self.app) / f"{version}.unpack"
        files.remove_tree(work)
        try:
            with span("verify"), artifact.open("rb") as f:  # TOCTOU: check again what we unpack
                signed.info.verify_length_and_hashes(f)
            job.check()
            with span("unpack"):
                archive.unpack(
                    artifact,
                    signed.custom.format,
                    work,
                    max_bytes=signed.custom.unpacked_size,
                    max_files=signed.custom.files,
                )
            crashpoint("unpack:mid")
            job.check()
            # a signed release with a broken manifest is the release's fault
            manifest = read_manifest(work)  # installers.kind_of would take it for another kind
            kinds = (manifest.deb, manifest.rpm, manifest.apt, manifest.installer)
            if any(s is not None for s in kinds):
                raise ConfigError(
                    "a bundle's uptend.toml may have no [deb] [rpm] [apt] [installer]"
                )
            with span("sync"):
                files.syncfs(work)
            work.rename(
                final
            )  # docs/architecture.md promise 2: versions/<v> appears whole or not at all
        except BaseException:
            files.remove_tree(work)
            raise
        files.fsync_dir(final.parent)
        crashpoint("unpack:renamed")

    def _stage_kept(
        self,
        signed: Signed,
        artifact: Path,
        job: Context,
        span: Span,
        keep: Keep,
        mode: int = 0o600,
    ) -> None:
        """versions/<v>/ = the verified `artifact` (named by `keep`) and its signed manifest.

        `keep` refuses (ConfigError) what the signed manifest does not describe.
        """
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
            name, source = keep(manifest, artifact)
            job.check()
            work.mkdir(mode=0o700)
            shutil.copyfile(source, work / name)
            (work / name).chmod(mode)
            (work / MANIFEST_NAME).write_bytes(text)
            with span("sync"):
                files.syncfs(work)
            work.rename(final)  # docs/architecture.md promise 2: whole or not at all
        except BaseException:
            files.remove_tree(work)
            raise
        files.fsync_dir(final.parent)
        crashpoint("unpack:renamed")

    def _keep_output(self, version: str, output: str) -> None:
        """What the system's installer said, in the app's log: the report's tail after a crash."""
        with open(self.layout.app_log(self.app, version), "a", opener=files.private_opener) as f:
            f.write(output)

    def activate(self, version: str, say: Say = ignore) -> None:
        files.point_current_at(self.layout.app_dir(self.app), version)

    def busy(self) -> str | None:
        return None  # a rename never waits for anyone

    def read_back(self) -> PackageState | None:
        return None  # `current` is the whole truth

    def deactivate(self) -> None:
        files.point_current_at(self.layout.app_dir(self.app), None)

    def installed(self) -> str | None:
        return files.read_current(self.layout.app_dir(self.app))

    def health(self, version: str) -> tuple[HealthSection, Path]:
        where = self.layout.version_dir(self.app, version)
        return read_manifest(where).health, where

    def cleanup(self, keep: set[str | None]) -> None:
        staging = self.layout.staging(self.app)
        for leftover in list(staging.iterdir()) if staging.is_dir() else []:
            files.remove_tree(leftover)
        keep = {*keep, self.installed()}
        versions = self.layout.versions(self.app)
        others = sorted(
            (p for p in versions.iterdir() if p.name not in keep),
            key=lambda p: p.stat().st_mtime_ns,
        )
        for old in others[:-1]:  # keep one previous version to go back to
            # rmtree is not atomic: a kill in the middle would leave a partial tree in
            # versions/, which `staged` would later take as complete. Move it out with
            # one rename first; a partial tree in staging is just a leftover.
            doomed = staging / f"{old.name}.removing"
            files.remove_tree(doomed)
            old.rename(doomed)
            files.fsync_dir(versions)
            files.remove_tree(doomed)
