"""The agent's main loop: check in, act on directives, keep apps running, back off when cut off.

One thread, one loop (the agent is synchronous): every TICK it supervises the apps; when a
check-in is due it reports and receives directives, and drives any update to completion.
When the server is unreachable the apps keep running on what the agent has, and it retries
with backoff; the last directives are kept on disk.
"""

import contextlib
import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from uptend import __version__
from uptend.agent import config as agent_config
from uptend.agent import files, machine
from uptend.agent.control import ControlClient
from uptend.agent.driver import AppDriver, Signed, find_target
from uptend.agent.journal import Journal
from uptend.agent.layout import Layout
from uptend.agent.lock import DataDirLock
from uptend.agent.outbox import Outbox
from uptend.agent.preconditions import unmet
from uptend.agent.supervisor import Supervisor
from uptend.agent.tuf_session import TufSession
from uptend.errors import AuthError, TransientError, UptendError, VerificationError
from uptend.policy.backoff import jittered_s, retry_delay_s
from uptend.protocol import AppDirective, AppState, AppStatus, CheckIn, Directives, Report
from uptend.protocol.versions import parse_version

log = logging.getLogger("uptend.agent")
TICK_S = 0.5
MAX_FETCH_BACKOFF_S = 300.0


@dataclass(slots=True)
class _Hold:
    """Why an app is not on its directed version right now."""

    state: AppState
    reason: str
    until: float = 0.0  # monotonic time before which no new attempt is made
    failures: int = 0


class Agent:
    def __init__(self, layout: Layout, stop: threading.Event | None = None) -> None:
        self.layout = layout
        self.config = agent_config.load(layout)
        self.stop = stop or threading.Event()
        self.supervisor = Supervisor(layout)
        self.outbox = Outbox(layout)
        self.control = ControlClient(self.config.server, self.config.credential)
        self.directives = self._last_directives()
        self.holds: dict[str, _Hold] = {}
        self._session: TufSession | None = None
        self.drivers: dict[str, AppDriver] = {}
        self._rand = random.Random()  # noqa: S311 - jitter, not secrets
        self.checkin_failures = 0
        self.unwritable = ""  # set each cycle: why updates are held back, if they are

    # -- life cycle -------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> None:
        self.layout.make()
        with DataDirLock(self.layout.root):
            self.supervisor.adopt()
            for app in self.layout.apps():
                self.driver(app).resume()
            self._tick()
            next_checkin = time.monotonic()
            try:
                while not self.stop.is_set():
                    if time.monotonic() >= next_checkin:
                        next_checkin = time.monotonic() + self.cycle()
                        if once:
                            break
                    self._tick()
                    self.stop.wait(min(TICK_S, max(0.0, next_checkin - time.monotonic())))
            finally:
                self._close_session()
                self.supervisor.shut_down(keep_apps=self.config.keep_apps_on_exit)

    def _tick(self) -> None:
        self.supervisor.tick(self._apps())

    def _apps(self) -> list[str]:
        directed = {d.app for d in self.directives.apps} if self.directives else set()
        return sorted(directed | set(self.layout.apps()))

    def driver(self, app: str) -> AppDriver:
        if app not in self.drivers:
            self.drivers[app] = AppDriver(
                self.layout,
                app,
                self.supervisor,
                self.outbox,
                self.session,
                self.config.targets_url,
                idle=self._tick_others(app),
                stop=self.stop,
            )
        return self.drivers[app]

    def _tick_others(self, app: str) -> "_Ticker":
        return _Ticker(self, app)

    def apps(self) -> list[str]:
        return self._apps()

    # -- one check cycle ----------------------------------------------------------------------

    def cycle(self) -> float:
        """Check in and act on the answer; return seconds until the next check-in."""
        self._close_session()  # python-tuf: one Updater per cycle
        self.unwritable = self._unwritable()
        sent = 0 if self.unwritable else len(self.outbox.pending)
        body = CheckIn(
            agent_version=__version__, apps=self.statuses(), reports=self.outbox.pending[:sent]
        )
        try:
            directives = self.control.post("api/v1/checkin", body, Directives)
        except (TransientError, AuthError) as e:
            self.checkin_failures += 1
            delay = retry_delay_s(
                self.checkin_failures,
                base_s=1.0,
                cap_s=min(self.poll_interval(), MAX_FETCH_BACKOFF_S),
                rand=self._rand.random(),
            )
            log.warning("check-in failed (%s); next try in %.1fs", e.message, delay)
            return delay
        self.checkin_failures = 0
        if sent:
            self.outbox.delivered(sent)
        changed = directives != self.directives
        self.directives = directives
        if self.unwritable:  # catalogue F41: no update without a journal; apps keep running
            log.warning("%s", self.unwritable)
            return jittered_s(self.poll_interval(), self._rand.random())
        if changed:  # the idle check-in path writes nothing when nothing changed
            files.write_atomically(self.layout.directives, directives.model_dump_json().encode())
        for app in directives.retry:
            self.driver(app).allow_retry()
            self.holds.pop(app, None)
        for directive in directives.apps:
            if self.stop.is_set():
                break
            self.apply(directive)
        return jittered_s(self.poll_interval(), self._rand.random())

    def _unwritable(self) -> str:
        """Why updates cannot be recorded durably now (read-only or full state), or ''."""
        for where in (self.layout.state_dir, self.layout.tuf_dir):
            probe = where / ".writable"
            try:
                probe.write_bytes(b"")
                probe.unlink()
            except OSError as e:
                return f"updates held back: cannot write to {where}: {e.strerror or e}"
        return ""

    def poll_interval(self) -> float:
        return self.directives.poll_interval_s if self.directives else self.config.poll_interval_s

    def session(self) -> TufSession:
        if self._session is None:
            trusted = self.layout.trusted_root.read_bytes()
            session = TufSession(self.layout.tuf_dir, self.config.metadata_url, trusted)
            try:
                session.refresh()
            except BaseException:
                session.close()
                raise
            finally:
                # a root rotation verified before any later failure is the next anchor
                newest = session.trusted_root()
                if newest != trusted:
                    files.write_atomically(self.layout.trusted_root, newest, mode=0o600)
            self._session = session
        return self._session

    def _close_session(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def apply(self, directive: AppDirective) -> None:
        """Bring one app to its directed version, unless something holds it back."""
        app, version = directive.app, directive.version
        driver = self.driver(app)
        plan = driver.plan()
        hold = self.holds.get(app)
        if not machine.is_settled(plan):
            return  # an update interrupted by shutdown: `run` resumes it first
        if version is None or version == plan.current:
            self.holds.pop(app, None)
            return
        if version in plan.bad:
            self._hold(app, AppState.FAILED, f"{version} failed here: {plan.failure}".strip(": "))
            return
        if hold is not None and time.monotonic() < hold.until:
            return
        if (
            plan.current is not None
            and parse_version(version) < parse_version(plan.current)
            and not directive.pinned
        ):
            self._refuse(
                app,
                version,
                f"refused to go down from {plan.current} to {version} without an operator pin",
            )
            return
        try:
            signed = find_target(self.session(), app, version)
        except VerificationError as e:
            self._refuse(app, version, e.message, retry=True)
            return
        except TransientError as e:
            self._backoff(app, e.message)
            return
        why = unmet(
            self.config.preconditions(),
            self.layout.app_dir(app),
            signed.info.length + signed.custom.unpacked_size,
        )
        if why is not None:
            if hold is None or hold.reason != f"deferred: {why}":
                self._report(app, version, "deferred", why)
            self._hold(app, AppState.DEFERRED, f"deferred: {why}")
            return
        self._update(driver, signed)

    def _update(self, driver: AppDriver, signed: Signed) -> None:
        plan = driver.update_to(signed)
        if plan.phase is not machine.Phase.IDLE:
            return  # interrupted by shutdown: resumes at next start
        if plan.current == signed.custom.version:
            self.holds.pop(driver.app, None)
        elif signed.custom.version in plan.bad:
            self._hold(driver.app, AppState.FAILED, plan.failure)
        else:
            self._backoff(driver.app, plan.failure)

    def _hold(self, app: str, state: AppState, reason: str) -> None:
        self.holds[app] = _Hold(state, reason)

    def _backoff(self, app: str, reason: str) -> None:
        """Not the release's fault (network, verification): retry soon, but not in a loop."""
        failures = self.holds[app].failures + 1 if app in self.holds else 1
        delay = retry_delay_s(
            failures,
            base_s=2.0,
            cap_s=min(self.poll_interval(), MAX_FETCH_BACKOFF_S),
            rand=self._rand.random(),
        )
        self.holds[app] = _Hold(AppState.FAILED, reason, time.monotonic() + delay, failures)

    def _refuse(self, app: str, version: str, reason: str, *, retry: bool = False) -> None:
        hold = self.holds.get(app)
        if hold is None or hold.reason != reason:
            self._report(app, version, "refused", reason)
        if retry:
            self._backoff(app, reason)
        else:
            self._hold(app, AppState.FAILED, reason)

    def _report(self, app: str, version: str, outcome: str, reason: str) -> None:
        log.warning("%s %s: %s %s", app, version, outcome, reason)
        self.outbox.add(
            Report(app=app, version=version, outcome=outcome, reason=reason, at=datetime.now(UTC))
        )

    def statuses(self) -> list[AppStatus]:
        out: list[AppStatus] = []
        for app in self._apps():
            plan = self.driver(app).plan()
            version = files.read_current(self.layout.app_dir(app))
            hold = self.holds.get(app)
            if plan.phase is not machine.Phase.IDLE:
                state, reason = AppState.UPDATING, f"{plan.phase} {plan.target}"
            elif hold is not None:
                state, reason = hold.state, hold.reason
            elif self.supervisor.alive(app):
                state, reason = AppState.RUNNING, self.unwritable
            elif version is None:
                state, reason = AppState.PENDING, ""
            else:
                state, reason = AppState.STOPPED, "not running"
            out.append(
                AppStatus(app=app, version=version, state=state, target=plan.target, reason=reason)
            )
        return out

    def _last_directives(self) -> Directives | None:
        try:
            return Directives.model_validate_json(self.layout.directives.read_bytes())
        except (OSError, ValueError):
            return None


class _Ticker:
    """Keeps the other apps supervised while one app's update blocks the loop."""

    def __init__(self, agent: Agent, app: str) -> None:
        self.agent, self.app = agent, app

    def __call__(self) -> None:
        self.agent.supervisor.tick([a for a in self.agent.apps() if a != self.app])


def status(layout: Layout) -> dict[str, object]:
    """What `uptend agent status` shows, read from disk only (works while the agent runs)."""
    cfg = agent_config.load(layout)
    apps = {}
    for app in layout.apps():
        p = Journal(layout.journal(app), layout.app_dir(app)).load()
        run: dict[str, object] = {}
        with contextlib.suppress(OSError, ValueError):
            run = json.loads(layout.run_file(app).read_text())
        apps[app] = {
            "current": files.read_current(layout.app_dir(app)),
            "phase": p.phase.value,
            "target": p.target,
            "failure": p.failure,
            "bad": list(p.bad),
            "pid": run.get("pid"),
        }
    return {
        "agent_id": cfg.agent_id,
        "name": cfg.name,
        "server": cfg.server,
        "apps": apps,
    }


__all__ = ["Agent", "UptendError", "status"]
