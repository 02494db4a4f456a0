"""The agent's main loop: a thin loop that performs what the pure functions say.

Every tick it takes finished look-ups, advances each app's driver (whose slow work runs in
worker children), and keeps every app running; when a check-in is due it reports and
receives directives, even while an update is in progress. What to do with a directive is
`decide`'s answer; how one update proceeds is the `machine`'s. When the server is
unreachable the apps keep running on what the agent has, and it retries with backoff.
A worker job that ends wakes the loop at once, so the next step starts without waiting
for a tick, in the same worker child (`worker.Workers`).
"""

import logging
import random
import threading
import time
from dataclasses import replace

from uptend import __version__
from uptend.agent import config as agent_config
from uptend.agent import configplan, decide, faults, files, jobs, machine, outbox, wire
from uptend.agent.commands import CommandBook
from uptend.agent.configs import ConfigKeeper
from uptend.agent.control import ControlClient
from uptend.agent.datadir import unwritable
from uptend.agent.driver import AppDriver
from uptend.agent.installers import supported
from uptend.agent.layout import Layout
from uptend.agent.lock import DataDirLock
from uptend.agent.longpoll import WAIT_S, LongPoll
from uptend.agent.operate import Operator
from uptend.agent.selfupdate import AGENT_APP, SelfHost, handover
from uptend.agent.settingskeeper import SettingsKeeper, effective, log_at
from uptend.agent.status import app_status, fit, report_of
from uptend.agent.supervisor import Supervisor
from uptend.agent.wire import (
    AppDirective,
    AppState,
    AppStatus,
    CheckIn,
    Directives,
    Report,
    clean,
)
from uptend.agent.worker import Spawn, Work, Workers
from uptend.errors import AuthError, RateLimitedError, TransientError, UptendError
from uptend.policy.backoff import jittered_s, retry_delay_s
from uptend.protocol import limits
from uptend.protocol.limits import MAX_REASON
from uptend.protocol.settings import AgentSettings

log = logging.getLogger("uptend.agent")
TICK_S = 0.5  # idle: supervise the apps twice a second
BUSY_TICK_S = 0.1  # an update in flight: judge it promptly


class Agent:
    def __init__(
        self, layout: Layout, stop: threading.Event | None = None, spawn: Spawn | None = None
    ) -> None:
        self.layout = layout
        self.base_config = agent_config.load(layout)  # agent.json, as enrolled and edited
        self.stop = stop or threading.Event()
        self.wake = threading.Event()  # set when a worker job ends, or to stop: tick now
        self.spawn = spawn or Workers(on_done=self.wake.set)  # look-ups, fetches, stages
        self.supervisor = Supervisor(layout)
        self.settings_keeper = SettingsKeeper(  # the signed settings over agent.json's
            layout,
            self.spawn,
            (self.base_config.metadata_url, self.base_config.targets_url),
            self.base_config.settings_confirm_s,
            self._settings_changed,
        )
        self.settings = self.settings_keeper.settings
        self.config = effective(self.base_config, self.settings)
        log_at(self.config.log_level)
        self.control = self._control()
        self.directives = self._last_directives()
        self.operator = Operator(
            CommandBook(layout.state_dir / "commands.json"), self.supervisor, retry=self._retry
        )
        self.rung = threading.Event()  # the long-poll says: something changed, check in now
        self.longpoll: LongPoll | None = None
        self.drivers: dict[str, AppDriver] = {}
        self.keepers: dict[str, ConfigKeeper] = {}  # each app's signed config
        self.looking: Work[dict[str, jobs.Answer]] | None = None
        self.asked: list[jobs.Ask] = []  # what `looking` looks up
        self._rand = random.Random()  # noqa: S311 - jitter, not secrets
        self.checkin_failures = 0
        self.unwritable = ""  # set each cycle: why updates are held back, if they are
        # an installed agent's launcher state, sd_notify
        self.host = SelfHost(layout, self.config.self_confirm_s)

    # -- life cycle -------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> None:
        self.layout.make()
        with DataDirLock(self.layout.root):
            self.supervisor.adopt()
            self.operator.resume()
            self.host.before_resume(self.driver)
            for app in self.layout.apps():
                self.driver(app).resume()
                if app != AGENT_APP:  # its config is the agent's settings (settings_keeper)
                    self.keeper(app).resume()
            self.tick()
            self.host.started()
            next_checkin = time.monotonic()
            checked = False
            if not once:
                self.longpoll = self._longpoll()
            try:
                while not self.stop.is_set() and handover() is None:
                    if self.rung.is_set() or self.operator.check_now:
                        self.rung.clear()
                        self.operator.check_now = False
                        next_checkin = time.monotonic()
                    if time.monotonic() >= next_checkin:
                        next_checkin = time.monotonic() + self.cycle()
                        checked = True
                    self.tick()
                    self.host.ticked()
                    if (
                        self.report_waits()
                        or self.config_ended()
                        or self.settings_keeper.take_check_now()  # try the settings in force
                    ):  # say so, hear what next
                        next_checkin = time.monotonic()
                    busy = self.busy()
                    if once and checked and not busy:
                        break
                    wait = BUSY_TICK_S if busy else TICK_S
                    self.wake.wait(min(wait, max(0.0, next_checkin - time.monotonic())))
                    self.wake.clear()  # before the tick: a job that ends during it wakes the next
            finally:
                if self.longpoll is not None:
                    self.longpoll.close()
                for driver in self.drivers.values():
                    driver.stop()
                if self.looking is not None:
                    self.looking.cancel()
                self.spawn.close_idle()
                keep = self.config.keep_apps_on_exit or handover() is not None
                self.supervisor.shut_down(keep_apps=keep)
                self.control.close()

    def _control(self) -> ControlClient:
        layout = self.layout
        return ControlClient(
            self.config.server,
            self.config.credential,
            store=lambda credential: agent_config.store_credential(layout, credential),
            ca_file=layout.ca_file(),
        )

    def _settings_changed(self, settings: AgentSettings) -> None:
        """Other signed settings in force (a trial's, or the previous ones back)."""
        old = self.config
        self.settings = settings
        self.config = replace(
            effective(self.base_config, settings),
            keep_apps_on_exit=old.keep_apps_on_exit,  # `agent run --keep-apps-on-exit`
            credential=self.control.credential or old.credential,  # rotated meanwhile
        )
        log_at(self.config.log_level)
        if self.config.server != old.server:
            log.info("checking in with %s from now on", self.config.server)
            self.control.close()
            self.control = self._control()
            if self.longpoll is not None:
                self.longpoll.close()
                self.longpoll = self._longpoll()

    def _longpoll(self) -> LongPoll:
        def ring() -> None:
            self.rung.set()
            self.wake.set()

        client = ControlClient(
            self.config.server, timeout_s=WAIT_S + 15, ca_file=self.layout.ca_file()
        )
        poll = LongPoll(
            client,
            credential=lambda: self.control.credential,
            generation=lambda: self.directives.generation if self.directives else None,
            ring=ring,
        )
        poll.start()
        return poll

    def request_stop(self) -> None:
        """Stop the loop within a tick; safe from a signal handler or another thread."""
        self.stop.set()
        self.wake.set()

    def report_waits(self) -> bool:
        """A report is pending and the last check-in went through: send it now, not at the poll.

        Reports are made once per outcome (`decide.report`), so this adds one check-in per
        update, not a loop; a failing server keeps its backoff, a full disk its poll.
        """
        if self.checkin_failures or self.unwritable:
            return False
        return any(self.driver(app).plan.pending for app in self.apps())  # what `cycle` sends

    def config_ended(self) -> bool:
        """A config trial just ended: its outcome goes to the server now, not at the poll."""
        ended = [k.take_ended() for k in self.keepers.values()]
        return any(ended) and not self.checkin_failures

    def busy(self) -> bool:
        return (
            self.looking is not None
            or any(d.busy for d in self.drivers.values())
            or any(k.busy for k in self.keepers.values())
            or self.settings_keeper.busy
            or self.operator.busy
        )

    def tick(self) -> None:
        """Look-ups first: an update they start has its fetch handed on in this same tick."""
        if self.looking is not None and self.looking.done():
            job, self.looking = self.looking, None
            try:
                answers = job.result()
            except (faults.WorkerError, faults.ReportedError) as e:
                found = faults.classify(e, staging=False)
                reason = found.reason if found is not None else str(e)
                log.warning("look-up failed: %s", reason)
                answers = jobs.failed_lookup(self.asked, reason)
            for app, answer in answers.items():
                self._answered(app, answer)
        for driver in list(self.drivers.values()):
            driver.tick()
        for keeper in list(self.keepers.values()):
            keeper.tick()
        self.settings_keeper.tick()
        self.operator.tick()
        self.supervisor.tick([a for a in self.apps() if not self._owned(a)])
        self.spawn.close_idle()  # a child that got no next job this tick is done

    def apps(self) -> list[str]:
        directed = {d.app for d in self.directives.apps} if self.directives else set()
        return sorted(directed | set(self.layout.apps()))

    def _owned(self, app: str) -> bool:
        """An update or a config trial has the app's process: not the watchdog's to restart."""
        keeper = self.keepers.get(app)
        return self.driver(app).owns_process or (keeper is not None and keeper.owns_process)

    def keeper(self, app: str) -> ConfigKeeper:
        if app not in self.keepers:

            def settled() -> str | None:  # (a clean-up job after an update does not count)
                if not machine.is_settled(self.driver(app).plan):
                    return None
                return files.read_current(self.layout.app_dir(app))

            def report(outcome: str, reason: str, log_tail: str) -> None:
                driver = self.driver(app)
                version = files.read_current(self.layout.app_dir(app)) or driver.plan.current
                if version is not None:
                    at = time.time()
                    driver.save(
                        decide.report(driver.plan, outcome, version, reason, log_tail, at=at)
                    )

            urls = (self.config.metadata_url, self.config.targets_url)
            self.keepers[app] = ConfigKeeper(
                self.layout, app, self.supervisor, self.spawn, urls, settled, report
            )
        return self.keepers[app]

    def driver(self, app: str) -> AppDriver:
        if app not in self.drivers:
            self.drivers[app] = AppDriver(
                self.layout, app, self.supervisor, self.config.targets_url, self.facts, self.spawn
            )
        return self.drivers[app]

    def facts(self, answer: decide.Found | decide.LookupFailed | None = None) -> decide.Facts:
        return decide.Facts(
            now=time.time(),
            rand=self._rand.random(),
            poll_s=self.poll_interval(),
            kinds=self.host.kinds(supported()),
            lookup=answer,
        )

    # -- one check cycle ----------------------------------------------------------------------

    def cycle(self) -> float:
        """Check in and act on the answer; return seconds until the next check-in."""
        self.unwritable = unwritable(self.layout)
        legacy = outbox.legacy(self.layout)
        sent: dict[str, int] = {}
        reports: list[Report] = []
        if not self.unwritable:  # reports are dropped from the journal once delivered
            # At most MAX_REPORTS per check-in, oldest first; the rest go with the next one.
            # One that cannot be sent (fit: None) counts as delivered, or it would block;
            # legacy reports over the limit go with the old file.
            reports = [r for r in map(fit, legacy[: limits.MAX_REPORTS]) if r is not None]
            budget = limits.MAX_REPORTS - len(reports)
            for app in self.apps():
                pending = self.driver(app).plan.pending[: max(0, budget)]
                sent[app] = len(pending)
                budget -= len(pending)
                reports += [r for p in pending if (r := report_of(app, p)) is not None]
            if budget > 0:  # of the agent's own settings: at most one
                reports += self.settings_keeper.reports()
        book = self.operator.book
        acks = book.acks(limits.MAX_REPORTS)
        applied, bad = self.settings_keeper.shown()
        body = CheckIn(
            agent_version=__version__,
            apps=self.statuses(),
            reports=reports,
            acks=acks,
            settings_version=applied,
            settings_bad=bad,
        )
        if self.longpoll is not None:
            self.longpoll.checked.set()  # this check-in answers its ring: it may ask again
        try:
            directives = self.control.checkin(body, self.directives)
        except (TransientError, AuthError) as e:
            self.checkin_failures += 1
            cap = min(self.poll_interval(), decide.MAX_BACKOFF_S)
            delay = retry_delay_s(
                self.checkin_failures, base_s=1.0, cap_s=cap, rand=self._rand.random()
            )
            if isinstance(e, RateLimitedError):  # 503/429 + Retry-After: no sooner than that
                delay = max(delay, float(e.retry_after_s))
            log.warning("check-in failed (%s); next try in %.1fs", e.message, delay)
            self.settings_keeper.checked_in(ok=False, error=e.message)
            return delay
        self.checkin_failures = 0
        self.host.checked_in()
        self.settings_keeper.checked_in(ok=True)
        self.settings_keeper.delivered(reports)
        book.delivered(acks)
        busy_s = directives.retry_after_s or 0.0  # a busy server's least wait: not kept
        commands = directives.commands
        directives = replace(directives, commands=[], retry_after_s=None)
        if commands:
            busy = lambda app: self.driver(app).owns_process  # noqa: E731
            self.operator.carry_out(commands, self.apps(), busy)
        book.resynced()  # after a damaged record: this answer held every pending command
        for app, count in sent.items():
            driver = self.driver(app)
            driver.save(decide.delivered(driver.plan, count))
        if legacy and not self.unwritable:
            outbox.drop_legacy(self.layout)
        changed = directives != self.directives
        self.directives = directives
        if self.unwritable:  # docs/faults.md F41: no update without a journal; apps keep running
            log.warning("%s", self.unwritable)
            return max(busy_s, jittered_s(self.poll_interval(), self._rand.random()))
        if changed:  # the idle check-in path writes nothing when nothing changed
            files.write_atomically(self.layout.directives, wire.encode(directives))
        for app in directives.retry:  # from a server before `retry` was a command
            self._retry(app)
        asks = [ask for d in directives.apps if (ask := self.apply(d)) is not None]
        for d in directives.apps:  # after the releases: a config waits for an update in flight
            if d.app != AGENT_APP:  # the agent's config is its settings, never an app's
                self.keeper(d.app).want(d.config_version, d.config_target)
        self.settings_keeper.want(directives.settings_version, directives.settings_target)
        if asks and self.looking is None:
            pre = self.config.preconditions()
            url = self.config.metadata_url
            self.asked = asks
            self.looking = jobs.lookup(self.spawn, self.layout, url, pre, asks)
        if book.unacked:  # say what became of the commands now, not at the next poll
            return busy_s
        return max(busy_s, jittered_s(self.poll_interval(), self._rand.random()))

    def _retry(self, app: str) -> None:
        driver = self.driver(app)
        driver.save(decide.retry(driver.plan))

    def apply(self, directive: AppDirective, answer: jobs.Answer | None = None) -> jobs.Ask | None:
        """Do what `decide` says for one directive; a look-up it asks for is returned."""
        driver = self.driver(directive.app)
        keeper = self.keepers.get(directive.app)
        if keeper is not None and keeper.busy:  # a config trial first; the next poll then
            return None
        facts = self.facts(answer.facts if answer is not None else None)
        plan, move = decide.decide(directive, driver.plan, facts)
        driver.save(plan)
        match move:
            case decide.Look(version=v, path=path):
                return jobs.Ask(directive.app, v, path)
            case decide.Update(version=v) if answer is not None and answer.record is not None:
                if isinstance(answer.facts, decide.Found) and answer.facts.version == v:
                    driver.start(v, answer.record)
            case decide.Abandon():
                driver.abandon()
            case decide.Activate():
                driver.activate()
            case decide.Held(reason=why) | decide.Refused(reason=why):
                log.info("%s %s: %s", directive.app, directive.version, why)
        return None

    def _answered(self, app: str, answer: jobs.Answer) -> None:
        for directive in self.directives.apps if self.directives else []:
            if directive.app == app:
                self.apply(directive, answer)

    def poll_interval(self) -> float:
        """A signed setting's, else the group's (as last heard), else enrollment's."""
        if self.settings.poll_interval_s is not None:
            return self.settings.poll_interval_s
        return self.directives.poll_interval_s if self.directives else self.config.poll_interval_s

    def statuses(self) -> list[AppStatus]:
        out = []
        for app in self.apps()[: limits.MAX_APPS]:  # the server takes no more per check-in
            driver = self.driver(app)
            installed = self.host.installed(app, files.read_current(self.layout.app_dir(app)))
            alive = self.supervisor.alive(app)
            crashes = self.supervisor.crashes(app)
            kind, package = driver.installed_as()
            status = app_status(
                app,
                driver.plan,
                installed,
                alive,
                driver.detail(),
                self.unwritable,
                crashes,
                kind=kind,
                package=package,
            )
            applied, bad, failure = (
                configplan.shown(self.keeper(app).state) if app != AGENT_APP else (None, None, "")
            )
            status = replace(status, config_version=applied, config_bad=bad)
            stopped = app in self.operator.book.stopped  # "stopped by operator" says more
            if failure and not stopped and status.state in (AppState.RUNNING, AppState.STOPPED):
                status = replace(status, state=AppState.FAILED, reason=clean(failure, MAX_REASON))
            out.append(self.operator.status(status))
        return out

    def _last_directives(self) -> Directives | None:
        try:
            return wire.decode(Directives, self.layout.directives.read_bytes())
        except (OSError, wire.WireError):
            return None


__all__ = ["Agent", "UptendError"]
