"""Whether an app the agent just started is up: alive through its probation, then its probes.

The judgement a release's and a config's trial make, for an app restarted by an operator's
`restart` command: the command is acknowledged once this says the app is back up (or why
it is not), not when the restart was issued. Polled at each tick; it never blocks (the
probes run in their own process or thread, `probes.ProbeRound`).
"""

import time
from pathlib import Path

from uptend.agent import files
from uptend.agent.layout import Layout
from uptend.agent.probes import ProbeRound
from uptend.agent.supervisor import Supervisor, read_manifest
from uptend.errors import ConfigError
from uptend.protocol.manifest import HealthSection

PROBE_PAUSE_S = 0.5  # between two failed probe rounds inside the timeout


def health_of(layout: Layout, app: str) -> tuple[HealthSection, Path] | None:
    """The [health] section of the app's installed version, and its dir (None: unreadable)."""
    version = files.read_current(layout.app_dir(app))
    if version is None:
        return None
    where = layout.version_dir(app, version)
    try:
        return read_manifest(where).health, where
    except ConfigError:
        return None


class HealthWatch:
    """One judgement; `deadline` (wall time) is when the probes start, else now + probation."""

    def __init__(
        self, layout: Layout, supervisor: Supervisor, app: str, deadline: float | None = None
    ) -> None:
        self.layout, self.supervisor, self.app = layout, supervisor, app
        self.found = health_of(layout, app)
        if deadline is None:
            deadline = time.time() + (self.found[0].probation if self.found is not None else 0.0)
        self.deadline = deadline  # probes from then on
        self.probe: ProbeRound | None = None
        self.next_round = 0.0

    def poll(self) -> tuple[bool, str | None]:
        """(finished, why the app is not healthy, or None when it is)."""
        if not self.supervisor.alive(self.app):
            return True, f"{self.app} {self.supervisor.ended(self.app) or 'is not running'}"
        now = time.time()
        if now < self.deadline:
            return False, None
        if self.found is None:
            return True, "its version's manifest is unreadable"
        health, cwd = self.found
        if self.probe is None:
            if now < self.next_round:
                return False, None
            env = {"UPTEND_APP": self.app, "UPTEND_CONFIG_FILE": str(self._config())}
            self.probe = ProbeRound(health, cwd, env)
        finished, why = self.probe.poll()
        if not finished:
            return False, None
        self.probe = None
        if why is None or now >= self.deadline + health.timeout:
            return True, why
        self.next_round = now + PROBE_PAUSE_S
        return False, None

    def cancel(self) -> None:
        if self.probe is not None:
            self.probe.cancel()
            self.probe = None

    def _config(self) -> Path:
        return self.layout.app_config(self.app)
