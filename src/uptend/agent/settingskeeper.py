"""Carrying out the agent's own signed settings: fetch, put in force, judge by check-ins.

`configplan.decide` picks the version and `settingsplan.judge` gives the verdict; this file
does the I/O. The documents are fetched by the worker child as an app's config is
(`configfetch.py`, through the signed TUF metadata) into `state/settings/<N>`, and checked
with `protocol.settings.parse` before anything uses them (one that does not parse is refused
like one that does not verify). The state file `state/settings.json` is the commit point:
the settings in force are always those of its `trying` version, else its `applied` one, so
a kill -9 anywhere leaves either the old settings or the new ones in force, never a mix,
and no document needs to be copied back on a rollback. A report (rolled_back, refused) is
kept in the same file until a check-in delivers it.
"""

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from uptend import __version__
from uptend.agent import configplan, files, jobs, settingsplan
from uptend.agent.config import AgentConfig
from uptend.agent.configjob import fetch_outcome
from uptend.agent.configplan import ConfigState
from uptend.agent.layout import SETTINGS_APP, Layout, private_dir
from uptend.agent.settingsplan import Trial
from uptend.agent.wire import Outcome, Report, clean
from uptend.agent.worker import Spawn, Work
from uptend.errors import ConfigError
from uptend.protocol import limits
from uptend.protocol.settings import LOG_LEVELS, AgentSettings, parse

log = logging.getLogger("uptend.agent")


def _load(path: Path) -> tuple[ConfigState, Report | None]:
    try:
        raw: Any = json.loads(path.read_bytes())
        s = raw["state"]
        state = ConfigState(
            applied=s["applied"],
            trying=s["trying"],
            deadline=float(s["deadline"]),
            bad=tuple(int(v) for v in s["bad"]),
            failure=str(s["failure"]),
        )
        r = raw["report"]
        report = None
        if r is not None:
            report = Report(
                app=SETTINGS_APP,
                version=str(r["version"]),
                outcome=Outcome(r["outcome"]),
                reason=str(r["reason"]),
                log_tail=str(r["log_tail"]),
                at=datetime.fromisoformat(r["at"]),
            )
    except FileNotFoundError:
        return ConfigState(), None
    except (OSError, ValueError, KeyError, TypeError) as e:
        # agent.json alone then holds: the settings it was enrolled with, which checked in
        log.warning("the settings state %s is damaged (%s); using agent.json's", path, e)
        return ConfigState(), None
    return state, report


def in_force(layout: Layout, state: ConfigState) -> AgentSettings:
    """The settings of the version in its trial, else of the applied one (else none)."""
    version = state.trying if state.trying is not None else state.applied
    if version is None:
        return AgentSettings()
    doc = layout.configs(SETTINGS_APP) / str(version)
    try:
        return parse(doc.read_bytes())
    except (OSError, ConfigError) as e:
        log.warning("agent settings %d are unreadable (%s); using agent.json's", version, e)
        return AgentSettings()


def log_at(level: str) -> None:
    """Set the agent's log level (agent.json's, or a signed setting's)."""
    if level.lower() not in LOG_LEVELS:  # agent.json edited by hand: say so, keep running
        log.warning("unknown log_level %r in agent.json; logging at info", level)
        level = "info"
    logging.getLogger("uptend").setLevel(level.upper())


def effective(base: AgentConfig, settings: AgentSettings) -> AgentConfig:
    """agent.json with what the signed settings set in its place."""
    return replace(base, **settingsplan.overrides(settings))  # type: ignore[arg-type]


def settings_state(layout: Layout) -> ConfigState:
    """The versions of the agent's settings, as last saved (for `agent status`)."""
    return _load(layout.state_dir / "settings.json")[0]


def effective_config(layout: Layout, base: AgentConfig) -> AgentConfig:
    """The settings in force on disk over `base` (for a process that runs no keeper)."""
    return effective(base, in_force(layout, settings_state(layout)))


class SettingsKeeper:
    """The agent's signed settings; `changed` is told each time the settings in force change."""

    def __init__(
        self,
        layout: Layout,
        spawn: Spawn,
        urls: tuple[str, str],  # metadata, targets
        bound_s: float,  # a trial with no successful check-in by then is rolled back
        changed: Callable[[AgentSettings], None],
    ) -> None:
        self.layout, self.spawn, self.urls, self.bound_s = layout, spawn, urls, bound_s
        self.changed = changed
        self.path = layout.state_dir / "settings.json"
        self.state, self.report = _load(self.path)
        self.settings = in_force(layout, self.state)
        self.trial = Trial()
        self.wanted: tuple[int | None, str | None] = (None, None)
        self.job: Work[str] | None = None
        self.fetching: int | None = None
        self.check_now = False  # new settings in force (or the old back): check in with them
        self.why = ""

    @property
    def busy(self) -> bool:
        return self.job is not None or self.state.trying is not None

    def take_check_now(self) -> bool:
        now, self.check_now = self.check_now, False
        return now

    def shown(self) -> tuple[int | None, int | None]:
        """What a check-in says: the applied version and the newest bad one."""
        applied, bad, _ = configplan.shown(self.state)
        return applied, bad

    def reports(self) -> list[Report]:
        return [self.report] if self.report is not None else []

    def delivered(self, sent: list[Report]) -> None:
        """A check-in took `sent` (what `reports` gave): it is not sent again."""
        if self.report is not None and self.report in sent:
            self._save(self.state, None)

    def want(self, version: int | None, target: str | None) -> None:
        """The directive's settings version (None: none, or one this agent reported bad)."""
        self.wanted = (version, target)
        if self.job is None:
            self._decide(None)

    def checked_in(self, ok: bool, error: str = "") -> None:
        """A check-in ended; it ran with the settings in their trial, if there is one."""
        if self.state.trying is not None:
            self.trial = settingsplan.checked_in(self.trial, ok, error)
            self.tick()

    def tick(self) -> None:
        if self.job is not None:
            if not self.job.done():
                return
            job, self.job = self.job, None
            self._decide(self._fetched(job))
        match settingsplan.judge(self.state, self.trial, time.time(), self.bound_s):
            case settingsplan.Healthy(version=v):
                self._save(configplan.judged(self.state, healthy=True), self.report)
                log.info("agent settings %d confirmed by a check-in", v)
                self._clean()
            case settingsplan.Unhealthy(version=v, reason=why):
                state = configplan.judged(self.state, healthy=False, reason=why)
                said = f"agent settings {v} rolled back: {why}"
                tail = f"the last check-in with them failed: {self.trial.error}"
                self._save(state, self._report(Outcome.ROLLED_BACK, said, tail))
                log.warning("%s; the previous settings are back in force", said)
                self._put_in_force()
            case settingsplan.Wait():
                pass

    def _decide(self, fetched: configplan.Fetched | configplan.FetchFailed | None) -> None:
        version, target = self.wanted
        facts = configplan.Facts(
            now=time.time(), settled=True, probation_s=self.bound_s, fetched=fetched
        )
        state, move = configplan.decide(version, target, self.state, facts)
        report = self.report
        if isinstance(move, configplan.Refused):
            report = self._report(Outcome.REFUSED, f"agent settings: {move.reason}", "")
        self._save(state, report)  # the commit point: a trial is in force from here
        match move:
            case configplan.Fetch(version=v, target=t):
                log.info("fetching agent settings %d", v)
                private_dir(self.layout.configs(SETTINGS_APP))
                self.fetching = v
                self.job = jobs.config(self.spawn, self.layout, self.urls, SETTINGS_APP, v, t)
            case configplan.Apply(version=v):
                log.info("agent settings %d in force; on trial for %gs", v, self.bound_s)
                self.trial = Trial()
                self._put_in_force()
            case configplan.Refused(reason=why):
                log.warning("agent %s", why)
            case configplan.Nothing(why=why) if why and why != self.why:
                log.info("agent %s", why)
        self.why = move.why if isinstance(move, configplan.Nothing) else ""

    def _fetched(self, job: Work[str]) -> configplan.Fetched | configplan.FetchFailed | None:
        version, self.fetching = self.fetching, None
        done = fetch_outcome(job, version)
        if not isinstance(done, configplan.Fetched):
            return done
        doc = self.layout.configs(SETTINGS_APP) / str(done.version)
        try:
            parse(doc.read_bytes())  # signed, but checked again: the agent's own judgement
        except (OSError, ConfigError) as e:
            doc.unlink(missing_ok=True)
            return configplan.FetchFailed(getattr(e, "message", str(e)), transient=False)
        return done

    def _put_in_force(self) -> None:
        self.settings = in_force(self.layout, self.state)
        self.check_now = True
        self.changed(self.settings)

    def _report(self, outcome: Outcome, reason: str, log_tail: str) -> Report:
        return Report(
            app=SETTINGS_APP,
            version=__version__,
            outcome=outcome,
            reason=clean(reason, limits.MAX_REASON),
            log_tail=clean(log_tail, limits.MAX_LOG_TAIL, keep_end=True),
            at=datetime.now(UTC),
        )

    def _clean(self) -> None:
        keep = {str(self.state.applied), str(self.state.trying)}
        folder = self.layout.configs(SETTINGS_APP)
        for leftover in folder.iterdir() if folder.is_dir() else []:
            if leftover.name not in keep:
                leftover.unlink(missing_ok=True)

    def _save(self, state: ConfigState, report: Report | None) -> None:
        if (state, report) == (self.state, self.report):
            return
        body = {
            "state": asdict(state),
            "report": None
            if report is None
            else {
                "version": report.version,
                "outcome": report.outcome.value,
                "reason": report.reason,
                "log_tail": report.log_tail,
                "at": report.at.isoformat(),
            },
        }
        files.write_atomically(self.path, json.dumps(body).encode())
        self.state, self.report = state, report
