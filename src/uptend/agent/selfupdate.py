"""The agent as an installed program: its layout, its service unit, its own state.

```
PREFIX/bin/uptend-agent          the launcher (agent/launcher.py): stdlib only, rarely changes
PREFIX/versions/<v>/             one self-contained environment per agent version
PREFIX/data/                     the agent's data dir (enrollment, journals, apps)
PREFIX/data/state/self.json      current, good, boots, bad versions, a fallback to report
```

The resident agent stays standard library only: this module is what it uses of the layout
(whether it runs from one, confirming its version after a check-in, sd_notify).
"""

import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uptend import __version__
from uptend.agent import files, launcher
from uptend.agent.crashpoints import crashpoint
from uptend.agent.journal import Journal
from uptend.agent.layout import Layout
from uptend.agent.machine import Phase, Plan

if TYPE_CHECKING:
    from uptend.agent.driver import AppDriver

AGENT_APP = "uptend-agent"  # = protocol.targets.AGENT_APP (no pydantic in the resident agent)
AGENT_KIND = "agent"
WATCHDOG_S = 60  # the unit's WatchdogSec; the agent pings at every tick (0.5 s)
RESTART_SEC = 2

UNIT = """\
# uptend agent, installed at {prefix} (`uptend agent install-service`).
[Unit]
Description=uptend agent ({prefix})
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
# The launcher execs into the agent: one process, from launcher to agent (same pid).
ExecStart={prefix}/bin/uptend-agent --keep-apps-on-exit
# Restart the agent whatever ended it; the launcher falls back to the last good version
# when a new one keeps dying before it checks in.
Restart=always
RestartSec={restart}
# Only the agent is signalled and killed on stop or restart: the apps it runs are left in
# the unit's cgroup and adopted by the next agent (--keep-apps-on-exit).
KillMode=process
# The agent sends READY=1 when it runs and WATCHDOG=1 at every tick of its loop.
WatchdogSec={watchdog}
NotifyAccess=main
TimeoutStopSec=30

[Install]
WantedBy=multi-user.target
"""


def unit_text(prefix: Path) -> str:
    return UNIT.format(prefix=prefix.resolve(), restart=RESTART_SEC, watchdog=WATCHDOG_S)


def prefix_of(layout: Layout) -> Path | None:
    """The install prefix when this data dir is `PREFIX/data` of an installed agent."""
    prefix = layout.root.resolve().parent
    return prefix if (prefix / "bin" / "uptend-agent").is_file() else None


def notify(message: str) -> bool:
    """sd_notify: one datagram to $NOTIFY_SOCKET (a path, or @ for an abstract socket)."""
    where = os.environ.get("NOTIFY_SOCKET", "")
    if not where:
        return False
    address = "\0" + where[1:] if where.startswith("@") else where
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(address)
            s.sendall(message.encode())
    except OSError:
        return False
    return True


CONFIRM_S = 300.0  # the default of agent.json's self_confirm_s


class _Process:
    """What this process knows of itself: when it started, whether it checked in."""

    started = time.monotonic()
    checked_in = False
    handover: str | None = None  # the version to hand over to, once the loop has stopped
    confirm_s = CONFIRM_S  # a new version not checked in by then is rolled back


def request_handover(version: str) -> None:
    """The launcher now points at `version`: stop the loop (apps left running), exec it."""
    _Process.handover = version


def handover() -> str | None:
    return _Process.handover


def exec_launcher(prefix: Path, argv: list[str]) -> None:
    """Hand over: this process becomes the launcher, which execs the version it points at."""
    crashpoint("self:handover")
    for handler in logging.getLogger("uptend").handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    script = prefix / "bin" / "uptend-agent"
    os.execv(script, [str(script), *argv])  # noqa: S606 - our own launcher, no shell


def verdict(version: str) -> tuple[bool, str]:
    """Judge this agent as the app `uptend-agent`: (finished, why not healthy or '')."""
    if version != __version__:
        return True, f"agent {version} is not the one running (this is {__version__})"
    if _Process.checked_in:
        return True, ""
    if time.monotonic() - _Process.started > _Process.confirm_s:
        why = f"agent {version} did not check in within {_Process.confirm_s:g}s of its start"
        return True, why
    return False, ""


def keep_log_tail(layout: Layout, version: str, text: str | None = None) -> None:
    """Keep `text` (default: agent.log's tail) as `version`'s output, where a report reads it."""
    prefix = prefix_of(layout)
    if prefix is None:
        return
    out = layout.app_log(AGENT_APP, version)
    out.parent.mkdir(parents=True, exist_ok=True)
    files.write_atomically(out, (launcher.log_tail(prefix) if text is None else text).encode())


def confirm(layout: Layout, version: str) -> None:
    """`version` runs and checked in: the launcher's last good version from now on."""
    prefix = prefix_of(layout)
    if prefix is None:
        return
    state = launcher.load(prefix)
    if state["good"] != version or state["boots"] or state["current"] != version:
        state.update(current=version, good=version, boots=0)
        launcher.save(prefix, state)


class SelfHost:
    """What the running agent does for its installed layout and its service manager."""

    def __init__(self, layout: Layout, confirm_s: float = CONFIRM_S) -> None:
        self.layout = layout
        self.prefix = prefix_of(layout)
        self._pinged = 0.0
        # judged by this process's verdict (a new version reads its own agent.json)
        _Process.confirm_s = confirm_s

    def kinds(self, supported: frozenset[str]) -> frozenset[str]:
        """Install kinds this agent takes: `agent` only when it runs from an installed layout."""
        return supported if self.prefix is not None else supported - {AGENT_KIND}

    def installed(self, app: str, on_disk: str | None) -> str | None:
        return __version__ if app == AGENT_APP and self.prefix is not None else on_disk

    def before_resume(self, driver: "Callable[[str], AppDriver]") -> None:
        """Under the lock, before any resume: the agent's own plan, and a fallback to report."""
        if self.prefix is None:
            return
        state = launcher.load(self.prefix)
        journal = self.layout.journal(AGENT_APP)
        if not journal.exists():  # installed by `uptend agent install`: current is its version
            self.layout.make_app(AGENT_APP)
            Journal(journal, self.layout.app_dir(AGENT_APP)).save(
                Plan(current=state["current"] or __version__)
            )
        fallback = state["fallback"]
        if not isinstance(fallback, dict):
            return
        d = driver(AGENT_APP)
        version = str(fallback.get("version"))
        if d.plan.target == version and d.plan.phase in _SWITCHING:
            # the launcher went back to this version: roll the update back, reported with
            # the dead version's log (kept as its output, where a rollback's report reads it)
            log_tail = str(fallback.get("log_tail") or "")
            keep_log_tail(self.layout, version, log_tail)
            d.fail(str(fallback.get("reason")), log_tail)
        state["fallback"] = None
        launcher.save(self.prefix, state)

    def started(self) -> None:
        notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=uptend agent {__version__}")

    def ticked(self) -> None:
        now = time.monotonic()
        if now - self._pinged >= 1.0:
            self._pinged = now
            notify("WATCHDOG=1")

    def checked_in(self) -> None:
        _Process.checked_in = True
        if self.prefix is None:
            return
        state = launcher.load(self.prefix)
        if state["current"] == state["good"] == __version__ and state["boots"]:
            state["boots"] = 0
            launcher.save(self.prefix, state)


_SWITCHING = (Phase.ACTIVATING, Phase.PROBATION)


def versions(prefix: Path, failed: tuple[str, ...] = ()) -> dict[str, str]:
    """Each version on disk and its state: good, trial (current, unconfirmed), bad, old.

    Bad: the launcher fell back from it, or it failed here (`failed`: its trial, say).
    """
    state = launcher.load(prefix)
    out = {}
    root = prefix / "versions"
    for p in sorted(root.iterdir()) if root.is_dir() else []:
        if p.name.startswith("."):
            continue
        v = p.name
        if v in state["bad"] or v in failed:
            out[v] = "bad"
        elif v == state["current"] and v != state["good"]:
            out[v] = "trial"
        elif v == state["good"]:
            out[v] = "good"
        else:
            out[v] = "old"
    return out


def status(layout: Layout) -> dict[str, Any]:
    """What `uptend agent status` adds: the agent's version and path, and those on disk."""
    prefix = prefix_of(layout)
    if prefix is None:
        return {"agent_version": __version__, "agent_path": sys.executable, "versions": {}}
    state = launcher.load(prefix)
    current = state["current"] or __version__
    plan = Journal(layout.journal(AGENT_APP), layout.app_dir(AGENT_APP)).load()
    return {
        "agent_version": current,
        "agent_path": str(launcher.python_of(prefix, current)),
        "versions": versions(prefix, plan.bad),
        "bad": state["bad"],
    }
