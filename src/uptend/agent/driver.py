"""The only caller of `machine`: journal the new plan, then perform its action.

Each action is idempotent, because after kill -9 `resume` repeats the last one:
downloads resume into the same staging file, an unpack starts over in staging, a switch
stops whatever runs and points `current` again, a probation runs again.
"""

import errno
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tuf.api.exceptions import RepositoryError
from tuf.api.metadata import TargetFile

from uptend import archive
from uptend.agent import files, machine
from uptend.agent.attempts import AttemptLog
from uptend.agent.crashpoints import crashpoint
from uptend.agent.download import download_target, target_url
from uptend.agent.journal import Journal
from uptend.agent.layout import Layout
from uptend.agent.outbox import Outbox
from uptend.agent.probes import run_probes
from uptend.agent.supervisor import Supervisor, read_manifest, tail
from uptend.agent.tuf_session import TufSession
from uptend.errors import ConfigError, TransientError, UptendError, VerificationError
from uptend.protocol import Report
from uptend.protocol.targets import ArchiveFormat, TargetCustom, parse_custom, target_path

log = logging.getLogger("uptend.agent")
TICK_S = 0.1
DOWNLOAD_TRIES = 3  # attempts of one download action, each resuming the last
RESUME_PAUSE_S = 1.0  # times the attempt number


@dataclass(frozen=True, slots=True)
class Signed:
    """A target as the signed metadata describes it."""

    name: str
    info: TargetFile
    custom: TargetCustom


def find_target(session: TufSession, app: str, version: str) -> Signed:
    """The signed target of `app` `version`; VerificationError if there is none."""
    missing: VerificationError | None = None
    for fmt in ArchiveFormat:
        name = target_path(app, version, fmt)
        try:
            info = session.target(name)
        except VerificationError as e:
            missing = e
            continue
        custom = parse_custom(name, info.custom)
        if (custom.app, custom.version) != (app, version):
            raise VerificationError(f"signed target {name} describes another release")
        return Signed(name, info, custom)
    assert missing is not None
    raise VerificationError(
        f"{app} {version} is not a signed target",
        hint="the server directed a version the release key never signed",
    ) from missing


class AppDriver:
    """Drives the update of one app through the machine."""

    def __init__(
        self,
        layout: Layout,
        app: str,
        supervisor: Supervisor,
        outbox: Outbox,
        session: Callable[[], TufSession],
        targets_url: str,
        idle: Callable[[], None],
        stop: threading.Event,
    ) -> None:
        self.layout = layout
        self.app = app
        self.supervisor = supervisor
        self.outbox = outbox
        self.session = session
        self.targets_url = targets_url
        self.idle = idle
        self.stop = stop
        self.journal = Journal(layout.journal(app), layout.app_dir(app))
        self.attempt: AttemptLog | None = None
        self._last_failure: tuple[str, str, str] | None = None
        layout.make_app(app)

    def plan(self) -> machine.Plan:
        return self.journal.load()

    def resume(self) -> machine.Plan:
        """Finish or undo whatever a previous agent left half-done."""
        plan = self.journal.load()
        plan, action = machine.resume(plan)
        if action is None:
            self.clean_staging(plan)
            return plan
        self._log(plan.target or "?", f"resuming {plan.phase} after a restart")
        if isinstance(action, machine.Report):  # the loop breaker gave up: report first
            self._report(action)
            action = None
        self.journal.save(plan)
        crashpoint(f"saved:{plan.phase}")
        return self._drive(plan, self._perform(action) if action is not None else None)

    def update_to(self, signed: Signed) -> machine.Plan:
        self.attempt = AttemptLog(self.layout.update_logs, self.app, signed.custom.version)
        self._write_custom(signed)
        return self._drive(self.journal.load(), machine.Directed(signed.custom.version))

    def allow_retry(self) -> None:
        self.journal.save(machine.allow_retry(self.journal.load()))

    def _drive(self, plan: machine.Plan, event: machine.Event | None) -> machine.Plan:
        while event is not None:
            plan, action = machine.step(plan, event)
            if isinstance(action, machine.Report):
                # The one effect that goes first: the plan that comes with a report is IDLE,
                # which `resume` never repeats, so a kill between journal and outbox would
                # lose the outcome. Outbox first: a kill in between repeats the last action
                # and reports again (at least once), never not at all.
                self._report(action)
                action = None
            self.journal.save(plan)  # intent first, effect second
            crashpoint(f"saved:{plan.phase}")
            event = self._perform(action) if action is not None else None
        if machine.is_settled(plan):
            self.clean_staging(plan)
        return plan

    def _log(self, version: str, message: str) -> None:
        if self.attempt is None:
            self.attempt = AttemptLog(self.layout.update_logs, self.app, version)
        self.attempt.write(message)

    # -- actions -------------------------------------------------------------------------

    def _perform(self, action: machine.Action) -> machine.Event | None:
        match action:
            case machine.Download(version=v):
                return self._download(v)
            case machine.Unpack(version=v):
                return self._unpack(v)
            case machine.SwitchTo(version=v, verify=verify):
                switched = self._switch(v)
                if verify and v is not None:  # a rollback: the old version must stay up too
                    verdict = self._probe(v)
                    if not isinstance(verdict, machine.Healthy):
                        return verdict  # Failed, or None when shutting down mid-check
                return switched
            case machine.Probe(version=v):
                return self._probe(v)
            case machine.Report():
                self._report(action)
                return None

    def _custom_file(self, version: str) -> Path:
        return self.layout.staging(self.app) / f"{version}.target.json"

    def _write_custom(self, signed: Signed) -> None:
        """Keep what the signed metadata said beside the download, to resume without it."""
        record = {
            "name": signed.name,
            "target": signed.info.to_dict(),
            "custom": signed.custom.model_dump(mode="json"),
        }
        path = self._custom_file(signed.custom.version)
        files.write_atomically(path, json.dumps(record).encode())

    def _read_custom(self, version: str) -> Signed:
        try:
            record = json.loads(self._custom_file(version).read_text())
            info = TargetFile.from_dict(record["target"], record["name"])
            return Signed(record["name"], info, TargetCustom.model_validate(record["custom"]))
        except (OSError, ValueError, KeyError, TypeError):
            # Lost staging: ask the signed metadata again.
            return find_target(self.session(), self.app, version)

    def _download(self, version: str) -> machine.Event:
        try:
            signed = self._read_custom(version)
            archive_file = self.layout.staging(self.app) / Path(signed.name).name
            if archive_file.exists():
                with archive_file.open("rb") as f:
                    signed.info.verify_length_and_hashes(f)
                return machine.Downloaded()
            partial = archive_file.with_name(archive_file.name + ".part")
            self._log(version, f"downloading {signed.name} ({signed.info.length} bytes)")
            reached = False

            def progress(done: int, _total: int) -> None:
                nonlocal reached
                if not reached and done > 0:
                    reached = True
                    crashpoint("download:mid")

            for attempt in range(1, DOWNLOAD_TRIES + 1):
                try:
                    download_target(
                        signed.info,
                        target_url(self.targets_url, signed.info),
                        partial,
                        progress=progress,
                    )
                    break
                except TransientError as e:
                    # Catalogue C20: resume a cut download with Range from the bytes kept in
                    # `partial` now; once this action fails, _fetch_failed drops staging.
                    if attempt == DOWNLOAD_TRIES or self.stop.wait(RESUME_PAUSE_S * attempt):
                        raise
                    self._log(version, f"{e.message}; resuming")
            partial.replace(archive_file)
            files.fsync_dir(archive_file.parent)
        except UptendError as e:
            return self._fetch_failed(version, e.message)
        except OSError as e:
            return self._fetch_failed(version, _os_reason(e))
        except RepositoryError as e:  # verify_length_and_hashes on a staged file
            return self._fetch_failed(version, f"staged download no longer verifies: {e}")
        self._log(version, "download verified")
        return machine.Downloaded()

    def _fetch_failed(self, version: str, reason: str) -> machine.Event:
        self._log(version, f"failed: {reason}")
        files.remove_tree(self.layout.staging(self.app))
        self.layout.make_app(self.app)
        return machine.Failed(reason)

    def _unpack(self, version: str) -> machine.Event:
        final = self.layout.version_dir(self.app, version)
        if final.is_dir():  # renamed in before a crash: complete by construction
            return machine.Unpacked()
        work = self.layout.staging(self.app) / f"{version}.unpack"
        try:
            signed = self._read_custom(version)
            archive_file = self.layout.staging(self.app) / Path(signed.name).name
            files.remove_tree(work)
            self._log(version, "unpacking")
            with archive_file.open("rb") as f:  # TOCTOU: check again what we unpack
                signed.info.verify_length_and_hashes(f)
            try:
                archive.unpack(
                    archive_file,
                    signed.custom.format,
                    work,
                    max_bytes=signed.custom.unpacked_size,
                    max_files=signed.custom.files,
                )
            except VerificationError as e:
                # The bytes were re-hashed just above: the signed release itself breaks an
                # archive rule or its declared size (catalogue B16, B18). Hold it back like a
                # broken manifest rather than download and refuse it again at every poll.
                self._log(version, f"failed: {e.message}")
                return machine.Failed(e.message, release_at_fault=True)
            crashpoint("unpack:mid")
            read_manifest(work)  # a signed release with a broken manifest is the release's fault
            files.syncfs(work)
            work.rename(final)  # DESIGN promise 2: versions/<v> appears whole or not at all
            files.fsync_dir(final.parent)
            crashpoint("unpack:renamed")
        except ConfigError as e:
            files.remove_tree(work)
            self._log(version, f"failed: {e.message}")
            return machine.Failed(e.message, release_at_fault=True)
        except UptendError as e:
            return self._fetch_failed(version, e.message)
        except OSError as e:
            return self._fetch_failed(version, _os_reason(e))
        except RepositoryError as e:  # verify_length_and_hashes on a staged file
            return self._fetch_failed(version, f"staged download no longer verifies: {e}")
        self._log(version, f"unpacked into {final}")
        return machine.Unpacked()

    def _switch(self, version: str | None) -> machine.Event:
        self._log(version or "-", f"switching current to {version}")
        self.supervisor.stop(self.app)
        crashpoint("switch:stopped")
        files.point_current_at(self.layout.app_dir(self.app), version)
        crashpoint("switch:pointed")
        if version is not None:
            self.supervisor.start(self.app)
        return machine.Switched()

    def _probe(self, version: str) -> machine.Event | None:
        manifest = read_manifest(self.layout.version_dir(self.app, version))
        health = manifest.health
        self._log(version, f"probation: {health.probation:g}s")
        if not self.supervisor.alive(self.app):
            self.supervisor.start(self.app)
        crashpoint("probation:mid")
        deadline = time.monotonic() + health.probation
        while True:
            if not self.supervisor.alive(self.app):
                code = self.supervisor.exit_code(self.app)
                return self._unhealthy(version, f"{self.app} {version} exited with code {code}")
            if time.monotonic() >= deadline:
                break
            self.idle()
            if self.stop.wait(TICK_S):
                return None  # shutting down: probation resumes at the next start
        env = {"UPTEND_APP": self.app, "UPTEND_VERSION": version}
        cwd = self.layout.version_dir(self.app, version)
        probe_deadline = time.monotonic() + health.timeout
        while (why := run_probes(health, cwd, env)) is not None:
            if time.monotonic() >= probe_deadline or not self.supervisor.alive(self.app):
                return self._unhealthy(version, why)
            if self.stop.wait(0.5):
                return None
        self._log(version, "healthy")
        return machine.Healthy()

    def _unhealthy(self, version: str, reason: str) -> machine.Event:
        log_tail = tail(self.layout.app_log(self.app, version))
        self._log(version, f"unhealthy: {reason}")
        return machine.Failed(reason, release_at_fault=True, log_tail=log_tail)

    def _report(self, report: machine.Report) -> None:
        self._log(report.version, f"{report.outcome} {report.reason}".strip())
        key = (report.outcome, report.version, report.reason)
        if report.outcome == "failed" and key == self._last_failure:
            # the same transient fault again (retried with backoff): once is enough
            self.attempt = None
            return
        self._last_failure = key if report.outcome == "failed" else None
        log_tail = report.log_tail
        if not log_tail and report.outcome in ("failed", "rolled_back"):
            # A rollback's report comes one step after the Failed event that had the tail
            # (the journal keeps the reason, not the log): read the app's output from disk,
            # which also works when the rollback was resumed after a crash.
            log_tail = tail(self.layout.app_log(self.app, report.version))
        self.outbox.add(
            Report(
                app=self.app,
                version=report.version,
                outcome=report.outcome,
                reason=report.reason,
                log_tail=log_tail,
                at=datetime.now(UTC),
            )
        )
        self.attempt = None

    def clean_staging(self, plan: machine.Plan) -> None:
        """Settled: drop staging leftovers and versions other than current and the last good."""
        staging = self.layout.staging(self.app)
        for leftover in list(staging.iterdir()) if staging.is_dir() else []:
            files.remove_tree(leftover)
        keep = {plan.current, files.read_current(self.layout.app_dir(self.app))}
        versions = self.layout.versions(self.app)
        others = sorted(
            (p for p in versions.iterdir() if p.name not in keep),
            key=lambda p: p.stat().st_mtime_ns,
        )
        for old in others[:-1]:  # keep one previous version to go back to
            # rmtree is not atomic: a kill in the middle would leave a partial tree in
            # versions/, which `_unpack` would later take as complete. Move it out with
            # one rename first; a partial tree in staging is just a leftover.
            doomed = staging / f"{old.name}.removing"
            files.remove_tree(doomed)
            old.rename(doomed)
            files.fsync_dir(versions)
            files.remove_tree(doomed)


def _os_reason(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return f"disk full: {e}"
    return f"{e.strerror or e}: {e.filename or ''}".strip(": ")
