"""Carrying out `configplan`'s moves for one app: fetch, write, restart or signal, judge.

What `configplan.decide` says is done here, tick by tick, never blocking the loop: the fetch
runs in the worker child (`agent/configfetch.py`, through python-tuf), the document is
written with one atomic write into the app's `UPTEND_CONFIG_FILE` (the one before it kept
as `configs/previous`), the app is restarted (stop polled, then start) or sent its
manifest's `[app] reload_signal`, and its health is judged as a release's is: alive through
the probation, then its probes. A failed trial writes the previous document back, restarts
the app and reports the failure with the app's log tail (through the release journal's
reports, `decide.report`). The state is journaled before each effect, so after a kill -9
a trial in progress is applied and judged again (`resume`).
"""

import json
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from uptend.agent import configplan, files, jobs
from uptend.agent.configjob import fetch_outcome
from uptend.agent.configplan import ConfigState
from uptend.agent.healthwatch import HealthWatch, health_of
from uptend.agent.layout import Layout
from uptend.agent.supervisor import Supervisor, read_manifest, tail
from uptend.agent.worker import Spawn, Work
from uptend.errors import ConfigError
from uptend.protocol.manifest import HealthSection

log = logging.getLogger("uptend.agent")
Reporter = Callable[[str, str, str], None]  # outcome, reason, log tail


def kept(layout: Layout, app: str, version: int) -> Path:
    """Where the verified document of config `version` of `app` is kept."""
    return layout.configs(app) / str(version)


def _load(path: Path) -> ConfigState:
    try:
        raw: Any = json.loads(path.read_bytes())
        return ConfigState(
            applied=raw["applied"],
            trying=raw["trying"],
            deadline=float(raw["deadline"]),
            bad=tuple(int(v) for v in raw["bad"]),
            failure=str(raw["failure"]),
        )
    except FileNotFoundError:
        return ConfigState()
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("the config state %s is damaged (%s); starting afresh", path, e)
        return ConfigState()


class ConfigKeeper:
    """The signed config of one app on this host."""

    def __init__(
        self,
        layout: Layout,
        app: str,
        supervisor: Supervisor,
        spawn: Spawn,
        urls: tuple[str, str],  # metadata, targets
        settled: Callable[[], str | None],  # the installed version, None while updating
        report: Reporter,
    ) -> None:
        self.layout, self.app, self.supervisor, self.spawn, self.urls = (
            layout,
            app,
            supervisor,
            spawn,
            urls,
        )
        self.settled, self.report = settled, report
        self.path = layout.state_dir / "config" / f"{app}.json"
        self.state = _load(self.path)
        self.wanted: tuple[int | None, str | None] = (None, None)
        self.job: Work[str] | None = None
        self.fetching: int | None = None
        self.restarting = False  # stopped for a new (or restored) document: start when gone
        self.watch: HealthWatch | None = None  # the trial's health judgement
        self.why = ""  # the last reason logged for doing nothing
        self.ended = False  # a trial ended (and its restart too): the server should hear now

    @property
    def busy(self) -> bool:
        return self.job is not None or self.owns_process

    @property
    def owns_process(self) -> bool:
        """A trial or a restart is in progress: the watchdog leaves the app to this."""
        return self.state.trying is not None or self.restarting

    def take_ended(self) -> bool:
        ended, self.ended = self.ended, False
        return ended

    def resume(self) -> None:
        """A trial a killed agent left: write its document again, restart, judge again."""
        trying = self.state.trying
        if trying is None:
            return
        doc = kept(self.layout, self.app, trying)
        if not doc.exists():
            self._fail("its document is gone after a restart")
            return
        files.write_atomically(self.layout.app_config(self.app), doc.read_bytes())
        self._save(configplan.replace_deadline(self.state, time.time() + self._probation()))
        self.supervisor.stop(self.app)
        self.restarting = True

    def want(self, version: int | None, target: str | None) -> None:
        """The directive's config of the app (None: none, or one this host reported bad)."""
        self.wanted = (version, target)
        if self.job is None:
            self._decide(None)

    def _facts(self, fetched: configplan.Fetched | configplan.FetchFailed | None) -> Any:
        current = self.settled()
        return configplan.Facts(
            now=time.time(),
            settled=current is not None,
            probation_s=self._probation() if current is not None else 0.0,
            fetched=fetched,
        )

    def _decide(self, fetched: configplan.Fetched | configplan.FetchFailed | None) -> None:
        version, target = self.wanted
        state, move = configplan.decide(version, target, self.state, self._facts(fetched))
        self._save(state)
        match move:
            case configplan.Fetch(version=v, target=t):
                log.info("%s: fetching config %d", self.app, v)
                self.fetching = v
                self.job = jobs.config(self.spawn, self.layout, self.urls, self.app, v, t)
            case configplan.Apply(version=v):
                self._apply(v)
            case configplan.Refused(reason=why):
                log.warning("%s: %s", self.app, why)
                self.report("refused", why, "")
            case configplan.Nothing(why=why) if why and why != self.why:
                log.info("%s: %s", self.app, why)
        self.why = move.why if isinstance(move, configplan.Nothing) else ""

    def _apply(self, version: int) -> None:
        config = self.layout.app_config(self.app)
        previous = config.read_bytes() if config.exists() else b"{}\n"
        files.write_atomically(self.layout.configs(self.app) / "previous", previous)
        files.write_atomically(config, kept(self.layout, self.app, version).read_bytes())
        sig = self._reload_signal()
        if sig is not None and self.supervisor.signal(self.app, getattr(signal, f"SIG{sig}")):
            log.info("%s: config %d written, SIG%s sent", self.app, version, sig)
            return
        log.info("%s: config %d written, restarting", self.app, version)
        self.supervisor.stop(self.app)
        self.restarting = True

    def tick(self) -> None:
        if self.job is not None:
            if not self.job.done():
                return
            job, self.job = self.job, None
            self._decide(self._fetched(job))
        if self.restarting:
            if not self.supervisor.stopped(self.app):
                return
            self.restarting = False
            self.supervisor.start(self.app)
            self.ended = self.ended or self.state.trying is None  # a failed trial's restart
        if self.state.trying is not None:
            self._judge()

    def _fetched(self, job: Work[str]) -> configplan.Fetched | configplan.FetchFailed | None:
        version, self.fetching = self.fetching, None
        return fetch_outcome(job, version)

    def _judge(self) -> None:
        """Alive through the probation, then the probes (`healthwatch`, as a restart is)."""
        if self.watch is None or self.watch.deadline != self.state.deadline:
            self.watch = HealthWatch(self.layout, self.supervisor, self.app, self.state.deadline)
        finished, why = self.watch.poll()
        if not finished:
            return
        self.watch = None
        if why is None:
            version = self.state.trying
            self._save(configplan.judged(self.state, healthy=True))  # durable, then said
            log.info("%s: config %s healthy", self.app, version)
            self._clean()
            self.ended = True
            return
        self._fail(why)

    def _fail(self, reason: str) -> None:
        """Restore the previous document, restart the app, report with the log tail."""
        version = self.settled() or ""
        log_tail = tail(self.layout.app_log(self.app, version)) if version else ""
        previous = self.layout.configs(self.app) / "previous"
        if previous.exists():
            files.write_atomically(self._config(), previous.read_bytes())
        state = configplan.judged(self.state, healthy=False, reason=reason)
        self._save(state)
        log.warning("%s: %s", self.app, state.failure)
        self.report("rolled_back", state.failure, log_tail)
        self.supervisor.stop(self.app)
        self.restarting = True

    def _clean(self) -> None:
        keep = {str(self.state.applied), "previous"}
        folder = self.layout.configs(self.app)
        for leftover in folder.iterdir() if folder.is_dir() else []:
            if leftover.name not in keep:
                leftover.unlink(missing_ok=True)

    def _config(self) -> Path:
        return self.layout.app_config(self.app)

    def _health(self) -> tuple[HealthSection, Path] | None:
        return health_of(self.layout, self.app) if self.settled() is not None else None

    def _probation(self) -> float:
        found = self._health()
        return found[0].probation if found is not None else 0.0

    def _reload_signal(self) -> str | None:
        version = self.settled()
        if version is None:
            return None
        try:
            return read_manifest(self.layout.version_dir(self.app, version)).app.reload_signal
        except ConfigError:
            return None

    def _save(self, state: ConfigState) -> None:
        if state == self.state:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        files.write_atomically(self.path, json.dumps(asdict(state)).encode())
        self.state = state
