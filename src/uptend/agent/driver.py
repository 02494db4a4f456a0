"""The only caller of `machine`: journal the new plan, then perform its action, tick by tick.

Nothing here blocks the loop for long: fetch and stage run in a worker child (`jobs`, so the
agent never loads TUF, HTTPS or the archive code; the stage follows the fetch in the same
tick, so in the same child), and so does the system's installer of a package or command
kind (dpkg, rpm, an installer command: `Installer.activates_in_child`); clean-up runs on a
worker thread, probation is judged at each tick against the deadline in the plan (process
alive, then the probes, polled), and an activation waits across ticks for the old process
to be gone (`Supervisor.stop` returns at once; the tick polls `stopped`). Each action is
idempotent, because after kill -9 `resume` repeats the last one: a fetch resumes into the
same staging file, a stage starts over, a switch stops whatever runs and activates again, a
probation runs again. An `Observer` (`agent/observe.py`) is told each phase entered and each
timed step: the public hook for benchmarks.
"""

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from uptend.agent import decide, faults, jobs, machine, selfupdate
from uptend.agent.attempts import AttemptLog
from uptend.agent.crashpoints import crashpoint
from uptend.agent.installers import InstallBusyError, Installer, InstallFailedError, for_version
from uptend.agent.installers.base import PackageState
from uptend.agent.journal import Journal
from uptend.agent.layout import Layout
from uptend.agent.observe import NO_OBSERVER, Observer, spans
from uptend.agent.probes import ProbeRound
from uptend.agent.status import Detail
from uptend.agent.supervisor import Supervisor, tail
from uptend.agent.worker import CancelledError, Job, Spawn, Work
from uptend.errors import ConfigError

log = logging.getLogger("uptend.agent")
PROBE_PAUSE_S = 0.5  # between rounds of probes that failed, until their timeout
BUSY_RETRY_S = 30.0  # a busy installer (msiexec's 1618) is run again after this long
ACTIVATE_STOP_WAIT_S = 20.0  # a stopping agent waits this long for dpkg, rpm, ... to finish
OWNS_PROCESS = {machine.Phase.ACTIVATING, machine.Phase.PROBATION, machine.Phase.ROLLING_BACK}


@dataclass(frozen=True, slots=True)
class _Switching:
    """A SwitchTo waiting, across ticks, for the old process to be gone."""

    version: str | None
    verify: bool
    since: float  # perf_counter, for the observer's `stop` span


@dataclass(slots=True)
class _Judging:
    """A probation (or a rollback's check) in progress: what to judge and what it gives."""

    version: str
    healthy: machine.Event  # Healthy for a probation, Switched for a verified rollback
    probe: ProbeRound | None = None
    next_round: float = 0.0


class AppDriver:
    """Drives the update of one app through the machine, one tick at a time."""

    def __init__(
        self,
        layout: Layout,
        app: str,
        supervisor: Supervisor,
        targets_url: str,
        facts: Callable[[], decide.Facts],
        spawn: Spawn,
        observer: Observer = NO_OBSERVER,
    ) -> None:
        self.layout = layout
        self.app = app
        self.supervisor = supervisor
        self.targets_url = targets_url
        self.facts = facts
        self.observer = observer
        self.spawn = spawn  # worker.Workers; unit tests run the child's code in_thread
        self.journal = Journal(layout.journal(app), layout.app_dir(app))
        self.plan = self.journal.load()
        self.action: machine.Action | None = None
        self.job: Work[Any] | None = None
        self.timing: tuple[str, str, float] | None = None  # the observed job: name, version, start
        self.switching: _Switching | None = None
        self.activating: _Switching | None = None  # its installer runs in the worker child
        # the package read back on a thread (`installed_as`): of which version, and the last
        self.reading: tuple[str, Job[PackageState | None]] | None = None
        self.package: tuple[str, PackageState | None] | None = None
        self.judging: _Judging | None = None
        self.attempt: AttemptLog | None = None
        self.deferred = ""  # why the installer cannot run now (another package manager)
        self.switch_at = 0.0  # time.time(): a busy installer's switch is tried again then
        layout.make_app(app)

    # -- what the runner asks -----------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """An update is in flight or its clean-up still runs."""
        return not machine.is_settled(self.plan) or self.job is not None

    @property
    def owns_process(self) -> bool:
        """The app's process is the driver's to start and judge, not the watchdog's."""
        return self.plan.phase in OWNS_PROCESS

    def save(self, plan: machine.Plan) -> None:
        """Journal `plan` if it differs from the last one saved (an idle cycle writes nothing)."""
        if plan != self.plan:
            with spans(self.observer, self.app, plan.target)("journal"):
                self.journal.save(plan)
            entered = plan.phase != self.plan.phase
            self.plan = plan
            if entered:
                self.observer.phase(self.app, plan.phase.value, plan.target or plan.current)

    def resume(self) -> None:
        """Finish or undo whatever a previous agent left half-done."""
        plan, action = machine.resume(self.plan)
        if action is None:
            if plan.phase is machine.Phase.IDLE:  # (a READY target is kept for its go)
                self._settled()
            return
        self._log(plan.target or "?", f"resuming {plan.phase} after a restart")
        self._commit(plan, action)

    def start(self, version: str, record: dict[str, Any]) -> None:
        """Update to `version`, whose signed record (`jobs.Answer.record`) the look-up gave."""
        self.attempt = AttemptLog(self.layout.update_logs, self.app, version)
        jobs.keep_record(self.layout, self.app, version, record)
        self._step(machine.Directed(version))

    def abandon(self) -> None:
        if self.job is not None:
            self.job.cancel(wait_s=5.0)
            self.job = None
        self._log(self.plan.target or "?", "abandoned: the directive names another version")
        self._step(machine.Abandoned())

    def activate(self) -> None:
        """The directive's hold on the staged target is lifted: activate it now."""
        self._log(self.plan.target or "?", "activating: the directive allows it now")
        self._step(machine.Cleared())

    def stop(self) -> None:
        """The agent stops: let go of running work; the journal resumes it at the next start.

        The system's installer is not cancelled (a dpkg killed mid-way leaves a package
        half-configured): it is given up to ACTIVATE_STOP_WAIT_S to finish, and if it runs
        on, the next agent repeats the (idempotent) install, deferred while it holds its lock.
        """
        if self.activating is not None and self.job is not None:
            deadline = time.monotonic() + ACTIVATE_STOP_WAIT_S
            while not self.job.done() and time.monotonic() < deadline:
                time.sleep(0.05)
        elif self.job is not None:
            self.job.cancel(wait_s=0.3)
        if self.judging is not None and self.judging.probe is not None:
            self.judging.probe.cancel()

    def detail(self) -> Detail:
        """Bytes done and total of a fetch, seconds of probation left."""
        if self.plan.phase is machine.Phase.FETCHING and self.job is not None:
            return self.job.progress.done, self.job.progress.total, None
        if self.judging is not None and self.plan.deadline:
            return None, None, max(0.0, self.plan.deadline - time.time())
        return None, None, None

    def installed_as(self) -> tuple[str | None, PackageState | None]:
        """The kind of the installed version and, settled, its package as the system says.

        Read back at each check-in on a thread (`dpkg-query`, `rpm -q`: processes of up to
        30 s each) and said at the next one: drift made by hand on the host shows within two
        check-ins, and no package manager holds up the loop.
        """
        current = self.plan.current
        if current is None:
            return None, None
        installer = self._installer(current)
        if self.plan.phase is not machine.Phase.IDLE or self.job is not None:
            self.reading = self.package = None  # what was read may change: read again after
            return installer.kind, None  # its package manager may be at work
        if self.reading is not None and self.reading[1].done():
            version, job = self.reading
            self.reading = None
            try:
                self.package = (version, job.result())
            except Exception:  # read_back never raises: a bug, logged
                log.exception("%s: reading its package back failed", self.app)
        if self.reading is None and installer.activates_in_child:  # the package kinds
            self.reading = (current, Job(f"{self.app}-read-back", lambda _j: installer.read_back()))
        said = self.package
        return installer.kind, said[1] if said is not None and said[0] == current else None

    # -- the tick ------------------------------------------------------------------------------

    def tick(self) -> None:
        """Take what finished (a job, a stop, a verdict), then perform the next action.

        In the same tick: a hand-off between steps costs no extra tick of the loop.
        """
        if self.job is not None:
            if not self.job.done():
                return
            job, self.job = self.job, None
            if self.timing is not None:
                name, version, started = self.timing
                self.observer.span(self.app, name, version, started, time.perf_counter())
                self.timing = None
            if self.activating is not None:
                switching, self.activating = self.activating, None
                self._activated(switching, job)
            elif (event := self._outcome_of(job)) is not None:
                self._step(event)
        elif self.switching is not None:
            if not self.supervisor.stopped(self.app):
                return
            switching, self.switching = self.switching, None
            self._switched(switching)
        elif self.judging is not None:
            if (event := self._judge(self.judging)) is None:
                return
            self.judging = None
            self._step(event)
        action, self.action = self.action, None
        if action is not None:
            self._perform(action)

    def _commit(self, plan: machine.Plan, action: machine.Action | None) -> None:
        if isinstance(action, machine.Report):
            plan = decide.outcome(plan, self._with_tail(action), self.facts())
            self._log(action.version, f"{action.outcome} {action.reason}".strip())
            self.attempt = None
            action = None
        self.save(plan)  # intent (and any report) first, effect second: one atomic write
        crashpoint(f"saved:{plan.phase}")
        self.action = action
        if plan.phase is machine.Phase.IDLE:  # clean-up keeps `current` only: not while READY
            self._settled()

    def _step(self, event: machine.Event) -> None:
        self._commit(*machine.step(self.plan, event))

    def _settled(self) -> None:
        """Clean-up off the loop: it took 0.1-2.9 s after each update."""
        installer = self._installer(self.plan.current)
        keep = {self.plan.current}
        span = spans(self.observer, self.app, self.plan.current)

        def cleanup(_job: Job[None]) -> None:
            with span("cleanup"):
                installer.cleanup(keep)

        self.job = Job(f"{self.app}-cleanup", cleanup)

    def _observed(self, name: str, version: str, job: Work[Any]) -> Work[Any]:
        """Relay the steps the job times (in the child too) and its whole span to the observer."""
        job.on_span = lambda step, start, end: self.observer.span(
            self.app, step, version, start, end
        )
        self.timing = (name, version, time.perf_counter())
        return job

    # -- actions -------------------------------------------------------------------------------

    def _perform(self, action: machine.Action) -> None:
        match action:
            case machine.Fetch(version=v):
                if time.time() < self.plan.retry_at:
                    self.action = action  # a network fault: resume after the backoff
                    return
                self._log(v, "fetching")
                self._log(v, self._downloading(v))
                self.job = self._observed(
                    "fetch", v, jobs.fetch(self.spawn, self.layout, self.app, v, self.targets_url)
                )
            case machine.Stage(version=v):
                self._log(v, "staging")
                self.job = self._observed(
                    "stage", v, jobs.stage(self.spawn, self.layout, self.app, v)
                )
            case machine.SwitchTo(version=v, verify=verify):
                if time.time() < self.switch_at:
                    self.action = action  # the installer said busy: the old version runs on
                    return
                if busy := self._installer(v).busy():  # deferred, the old app still runs
                    if self.deferred != busy:
                        self._log(v or "-", f"deferred: {busy}")
                    self.deferred, self.action = busy, action
                    return
                self.deferred = ""
                self._log(v or "-", f"switching to {v}")
                self.switching = _Switching(v, verify, time.perf_counter())
                self.supervisor.stop(self.app)  # SIGTERM; `tick` waits for it to be gone
            case machine.Probe(version=v):
                if not self.supervisor.stopped(self.app):
                    self.action = action  # a stale process left by the last agent still stops
                    return
                if not self.supervisor.alive(self.app):
                    self.supervisor.start(self.app)
                self._begin_judging(v, machine.Healthy())
            case machine.Report():  # never: _commit turns reports into the plan
                raise machine.IllegalTransitionError("a report is not performed")

    def _downloading(self, version: str) -> str:
        try:  # the record as the look-up gave it; the child checks it before use
            kept = json.loads(self.layout.target_record(self.app, version).read_bytes())
            return f"downloading {kept['name']} ({int(kept['target']['length'])} bytes)"
        except (OSError, ValueError, KeyError, TypeError):
            return "downloading"

    def _installer(self, version: str | None) -> Installer:
        return for_version(self.layout, self.app, version)

    def fail(self, reason: str, log_tail: str) -> None:
        """The update failed outside this process (the launcher fell back): roll it back."""
        self._log(self.plan.target or "?", f"unhealthy: {reason}")
        self._step(machine.Failed(reason, release_at_fault=True, log_tail=log_tail))

    def _outcome_of(self, job: Work[Any]) -> machine.Event | None:
        try:
            result: object = job.result()
        except CancelledError:
            return None
        except Exception as e:
            fetching = self.plan.phase is machine.Phase.FETCHING
            found = faults.classify(e, staging=not fetching)
            if found is None or machine.is_settled(self.plan):
                raise
            self._log(self.plan.target or "?", f"failed ({found.fault}): {found.reason}")
            if fetching and found.resumes:
                at = decide.fetch_retry_at(self.plan, self.facts())
                return machine.Failed(found.reason, retry_at=at)
            return machine.Failed(found.reason, found.fault is faults.Fault.RELEASE)
        match result:
            case machine.Fetched() | machine.Staged():
                done = "staged" if isinstance(result, machine.Staged) else "download verified"
                self._log(self.plan.target or "?", done)
                return result
        return None  # a clean-up

    def _switched(self, switching: _Switching) -> None:
        """The old process is gone: make `version` installed, start it, then judge or go on.

        A kind whose installer is the system's (dpkg, rpm, an installer command) installs in
        the worker child, off the loop: `tick` takes its outcome (`_activated`).
        """
        version = switching.version
        self.observer.span(self.app, "stop", version, switching.since, time.perf_counter())
        crashpoint("switch:stopped")
        installer = self._installer(version)
        if version is not None and installer.activates_in_child:
            self.activating = switching
            job = jobs.activate(self.spawn, self.layout, self.app, version)
            self.job = self._observed("activate", version, job)
            return
        with spans(self.observer, self.app, version)("activate"):
            if version is None:
                installer.deactivate()
            else:
                try:
                    installer.activate(version, lambda line: self._log(version, line))
                except InstallBusyError as e:  # another installation runs: not a failure
                    self._deferred(switching, e.reason)
                    return
                except InstallFailedError as e:  # the system's installer refused: roll back
                    self._install_failed(version, e.reason, e.output)
                    return
        self._pointed(switching)

    def _activated(self, switching: _Switching, job: Work[Any]) -> None:
        """The worker child's install of `switching.version` ended: go on as `_switched`."""
        version = switching.version
        assert version is not None
        try:
            done: jobs.Activated = job.result()
        except CancelledError:
            return  # the agent stops: the journal (activating) repeats the switch
        except Exception as e:
            found = faults.classify(e, staging=True)
            if found is None:
                raise
            if found.fault is faults.Fault.WORKER:  # the child died: not the release's fault
                self._deferred(switching, f"the installer's worker failed: {found.reason}")
            else:
                self._install_failed(version, found.reason, "", found.fault is faults.Fault.RELEASE)
            return
        for line in done.said:
            self._log(version, line)
        if done.busy:  # another installation runs: not a failure
            self._deferred(switching, done.busy)
        elif done.failed:  # the system's installer refused: roll back
            self._install_failed(version, done.failed, done.output)
        else:
            self._pointed(switching)

    def _install_failed(
        self, version: str, reason: str, output: str, release_at_fault: bool = True
    ) -> None:
        self._log(version, f"install failed: {reason}")
        self._step(machine.Failed(reason, release_at_fault=release_at_fault, log_tail=output))

    def _pointed(self, switching: _Switching) -> None:
        """`current` names the version: start it, then judge it or go on."""
        version = switching.version
        crashpoint("switch:pointed")
        if version is None:
            self._step(machine.Switched())
            return
        with spans(self.observer, self.app, version)("start"):
            self.supervisor.start(self.app)
        if switching.verify:  # a rollback: the old version must stay up too
            self._begin_judging(version, machine.Switched())
        else:
            self._step(machine.Switched())

    def _deferred(self, switching: _Switching, reason: str) -> None:
        """Run the old version again (`current` still names it) and retry the switch later."""
        self._log(switching.version or "-", f"deferred: {reason}")
        self.deferred, self.switch_at = reason, time.time() + BUSY_RETRY_S
        if self._installer(self.plan.current).installed() is not None:
            self.supervisor.start(self.app)
        self.action = machine.SwitchTo(switching.version, switching.verify)

    # -- probation, judged at each tick ---------------------------------------------------------

    def _begin_judging(self, version: str, healthy: machine.Event) -> None:
        try:
            health, _ = self._installer(version).health(version)
        except ConfigError as e:
            self._step(machine.Failed(e.message, release_at_fault=True))
            return
        self._log(version, f"probation: {health.probation:g}s")
        self.save(replace(self.plan, deadline=time.time() + health.probation))
        crashpoint("probation:mid")
        self.judging = _Judging(version, healthy)

    def _judge(self, judging: _Judging) -> machine.Event | None:
        version = judging.version
        if self.app == selfupdate.AGENT_APP:  # the agent itself: it runs, and checked in
            done, failure = selfupdate.verdict(version)
            if not done:
                return None
            if failure:
                selfupdate.keep_log_tail(self.layout, version)  # its log: agent.log's tail
                return self._unhealthy(version, failure)
            selfupdate.confirm(self.layout, version)
            crashpoint("self:confirmed")
            self._log(version, "healthy: running and checked in")
            return judging.healthy
        if not self.supervisor.alive(self.app):
            ended = self.supervisor.ended(self.app) or "is not running"
            return self._unhealthy(version, f"{self.app} {version} {ended}")
        now = time.time()
        if now < self.plan.deadline:
            return None
        health, cwd = self._installer(version).health(version)
        if judging.probe is None:
            if now < judging.next_round:
                return None
            env = {"UPTEND_APP": self.app, "UPTEND_VERSION": version}
            judging.probe = ProbeRound(health, cwd, env)
        finished, why = judging.probe.poll()
        if not finished:
            return None
        judging.probe = None
        if why is None:
            self._log(version, "healthy")
            return judging.healthy
        if now >= self.plan.deadline + health.timeout:
            return self._unhealthy(version, why)
        judging.next_round = now + PROBE_PAUSE_S
        return None

    def _unhealthy(self, version: str, reason: str) -> machine.Event:
        log_tail = tail(self.layout.app_log(self.app, version))
        self._log(version, f"unhealthy: {reason}")
        return machine.Failed(reason, release_at_fault=True, log_tail=log_tail)

    def _with_tail(self, report: machine.Report) -> machine.Report:
        if report.log_tail or report.outcome not in ("failed", "rolled_back"):
            return report
        # A rollback's report comes one step after the Failed event that had the tail
        # (the journal keeps the reason, not the log): read the app's output from disk,
        # which also works when the rollback was resumed after a crash.
        return replace(report, log_tail=tail(self.layout.app_log(self.app, report.version)))

    def _log(self, version: str, message: str) -> None:
        if self.attempt is None:
            self.attempt = AttemptLog(self.layout.update_logs, self.app, version)
        self.attempt.write(message)
