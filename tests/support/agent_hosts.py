"""Installed agents for the self-update tests: a prefix, a service stand-in, what they show.

An `Installed` host is `uptend agent install PREFIX` of the session's base build (its
environment put in place as hard links first, which the install then finds), run through
its launcher by `ServiceStandIn`. The patches below make the broken new versions.

What the server says is read through the admin API in this process (`Admin`, the client
the CLI uses), not by a CLI process per look: the waits poll it, and on two shared cores
an interpreter start per poll slowed the agents they wait for.
"""

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from tests.support.agent_builds import BASE_VERSION, ServiceStandIn, SharedBuilds, share_env
from tests.support.fleet import Fleet, wait_until
from uptend.cli._client import Admin

NEW = "0.2.0"


class Installed:
    """One host: the agent installed under PREFIX, run by a stand-in for systemd."""

    def __init__(
        self,
        fleet: Fleet,
        builds: SharedBuilds,
        name: str,
        agent_json: dict[str, Any] | None = None,
    ) -> None:
        self.fleet = fleet
        self.name = name
        self.prefix = fleet.root / f"{name}-prefix"
        share_env(builds.env, self.prefix)
        fleet.cli(
            *("agent", "install", str(self.prefix), "--server", fleet.url),
            *("--token", fleet.enroll_token, "--name", name, "--wheelhouse", str(builds.base)),
        )
        cfg_file = self.prefix / "data" / "agent.json"
        cfg = json.loads(cfg_file.read_text())
        cfg["check_reboot"] = False
        cfg.update(agent_json or {})
        cfg_file.write_text(json.dumps(cfg))
        self.service: ServiceStandIn | None = None
        self.admin = Admin(fleet.url, fleet.admin_token)

    def start(self, arms: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        """Start the service (again: it is stopped first; the apps stay, --keep-apps-on-exit)."""
        if self.service is not None:
            self.service.stop()
        self.service = ServiceStandIn(self.prefix, self.log_file, env=env, arms=arms)

    def stop(self) -> None:
        """Stop the service and kill the apps it left running (a test's clean-up)."""
        if self.service is not None:
            self.service.stop()
        for run in self.prefix.glob("data/apps/*/run.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                os.killpg(int(json.loads(run.read_text())["pid"]), 9)
        self.admin.close()

    @property
    def log_file(self) -> Path:
        return self.fleet.root / f"{self.name}.log"

    def status(self) -> dict[str, Any]:
        return self.fleet.json("agent", "status", str(self.prefix / "data"))  # type: ignore[no-any-return]

    def app_pid(self) -> int:
        pid = self.recorded_pid()
        assert pid is not None
        return pid

    def recorded_pid(self) -> int | None:
        """The demo app's pid as run.json records it (None between record and spawn)."""
        try:
            run = json.loads((self.prefix / "data" / "apps" / "demo" / "run.json").read_text())
        except (OSError, ValueError):
            return None
        return None if run.get("pid") is None else int(run["pid"])

    def agent_path(self) -> str:
        assert self.service is not None
        argv = self.service.agent_argv()
        return argv[0] if argv else ""

    def server_view(self) -> dict[str, Any]:
        """What `uptend fleet show NAME --json` shows of it (without the commands)."""
        return self.admin.agent(self.name).model_dump(mode="json")

    def agent_reports(self) -> list[dict[str, Any]]:
        return [r for r in self.server_view()["reports"] if r["app"] == "uptend-agent"]

    def journal(self) -> dict[str, Any]:
        path = self.prefix / "data" / "state" / "uptend-agent.journal"
        return json.loads(path.read_text())["plan"]  # type: ignore[no-any-return]

    def attempts(self) -> int:
        """Update logs of the agent's own updates: one per version it started to update to."""
        return len(list((self.prefix / "data/logs/updates").glob("uptend-agent*")))

    def running(self, version: str) -> bool:
        """`version` runs from PREFIX/versions/<version>/ and checked in (the server says so)."""
        if f"/versions/{version}/" not in self.agent_path():
            return False
        return bool(self.server_view()["agent"]["agent_version"] == version)

    def settled_on(self, version: str) -> bool:
        plan = self.journal()
        return plan["phase"] == "idle" and plan["current"] == version and self.running(version)


def up(fleet: Fleet, builds: SharedBuilds, name: str, **kw: Any) -> Installed:
    """An installed host running BASE_VERSION, checked in, with the demo app running."""
    h = Installed(fleet, builds, name, **kw)
    h.start()
    wait_until(lambda: h.running(BASE_VERSION), 60, f"{name}: agent {BASE_VERSION} checked in")
    wait_until(lambda: h.recorded_pid() is not None, 30, f"{name}: demo running")
    return h


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -- broken new versions (patches of a copy of src/uptend) ---------------------------------


def breaks_at_import(src: Path) -> None:
    runner = src / "agent" / "runner.py"
    runner.write_text(runner.read_text() + '\nraise RuntimeError("this build cannot import")\n')


def exits_at_start(src: Path) -> None:
    config = src / "agent" / "config.py"
    text = config.read_text()
    assert "def load(layout: Layout) -> AgentConfig:\n" in text
    text = text.replace(
        "def load(layout: Layout) -> AgentConfig:\n",
        "def load(layout: Layout) -> AgentConfig:\n    raise SystemExit(3)\n",
    )
    config.write_text(text)


def _server_line(src: Path, expr: str) -> None:
    control = src / "agent" / "control.py"
    text = control.read_text()
    assert "        self.server = " in text
    control.write_text(text.replace("        self.server = ", f"{expr}\n        self.server = ", 1))


def cannot_check_in(src: Path) -> None:
    """Every server URL is a closed port: the trial's check-in fails."""
    _server_line(src, '        server = "http://127.0.0.1:9/"')


def checks_in_only_on_trial(src: Path) -> None:
    """The trial checks in; the version made current never does (it runs, unheard)."""
    _server_line(
        src,
        "        import os\n"
        '        if not os.environ.get("UPTEND_AGENT_TRIAL"):\n'
        '            server = "http://127.0.0.1:9/"',
    )


def crashes_after_switch(src: Path) -> None:
    resident = src / "agent" / "resident.py"
    text = resident.read_text()
    assert "    args = parser.parse_args(argv)\n" in text
    text = text.replace(
        "    args = parser.parse_args(argv)\n",
        "    args = parser.parse_args(argv)\n    raise SystemExit(7)  # at every start\n",
    )
    resident.write_text(text)


def left_on_the_first_version(host: Installed, app_pid: int, why: str, *, tail: bool) -> None:
    """After a broken NEW: back on BASE_VERSION, which reported why; NEW is bad, not retried.

    `tail`: the report must carry a log tail (agent.log's, when the version ran as the agent;
    a failed trial's output is in the reason instead).
    """
    wait_until(
        lambda: NEW in host.journal()["bad"] and host.journal()["phase"] == "idle",
        240,
        f"{NEW} marked bad",
    )
    wait_until(lambda: host.running(BASE_VERSION), 60, f"back on {BASE_VERSION}")
    reports = host.agent_reports()
    assert reports, "the failure is reported"
    assert reports[0]["version"] == NEW
    assert reports[0]["outcome"] in ("failed", "rolled_back")
    assert why in reports[0]["reason"], reports[0]["reason"]
    assert reports[0]["log_tail"] or not tail
    status = host.status()
    assert status["agent_version"] == BASE_VERSION
    assert status["versions"][NEW] == "bad"
    assert host.app_pid() == app_pid
    assert alive(app_pid)
    # not retried: a few more check-ins, and no new attempt
    attempts = host.attempts()
    before = host.server_view()["agent"]["last_seen"]
    wait_until(lambda: host.server_view()["agent"]["last_seen"] != before, 30, "a check-in")
    assert host.attempts() == attempts
    assert host.journal()["target"] is None
