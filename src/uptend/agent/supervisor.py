"""Keeps each app's process running: start from `current/`, restart with backoff, stop cleanly.

Apps run in their own session (process group), so a stop reaches their children too, and a
record in apps/<app>/run.json lets a restarted agent find and stop the processes a killed
agent left behind, before it starts them again. The record is written before the spawn with
a run id the app carries in its environment (UPTEND_RUN_ID), so even a kill between fork and
the pid record leaves no process nobody knows about.
"""

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from uptend.agent import files
from uptend.agent.layout import Layout
from uptend.errors import ConfigError
from uptend.policy.backoff import retry_delay_s
from uptend.protocol.manifest import MANIFEST_NAME, Manifest, parse_manifest

log = logging.getLogger("uptend.agent")

STOP_TIMEOUT_S = 10.0
RESTART_BASE_S = 1.0
RESTART_CAP_S = 60.0
STABLE_AFTER_S = 30.0  # a process that ran this long resets the restart backoff
RUN_ID_ENV = "UPTEND_RUN_ID"  # marks an app's processes, to find them after a kill -9


@dataclass(slots=True)
class _Proc:
    popen: subprocess.Popen[bytes] | None  # None: the command could not be started
    version: str
    started: float
    restarts: int = 0
    restart_at: float | None = None

    def exit_code(self) -> int | None:
        return 127 if self.popen is None else self.popen.poll()


def read_manifest(version_dir: Path) -> Manifest:
    path = version_dir / MANIFEST_NAME
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    return parse_manifest(data, where=str(path))


def tail(path: Path, lines: int = 50) -> str:
    """The last `lines` lines of a log file (reads at most 64 KiB)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def _starttime(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _pids_with_env(entry: str) -> list[int]:
    """Processes whose initial environment holds `entry` (NAME=value)."""
    wanted = entry.encode()
    found: list[int] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if wanted in environ.split(b"\0"):
            found.append(int(proc.name))
    return found


def _kill_group(pid: int, timeout_s: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _stop_child(popen: subprocess.Popen[bytes]) -> None:
    """SIGTERM the app's group, SIGKILL it after STOP_TIMEOUT_S; reap; kill stragglers."""
    if popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGTERM)
        try:
            popen.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
            popen.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, signal.SIGKILL)  # children the app left in its group


class Supervisor:
    def __init__(self, layout: Layout, env: dict[str, str] | None = None) -> None:
        self.layout = layout
        self.env = env if env is not None else dict(os.environ)
        self._procs: dict[str, _Proc] = {}
        self._held: set[str] = set()  # apps not to restart (stopped for a switch)

    def reap_orphans(self) -> None:
        """Stop app processes that a killed agent left behind (their run.json says so)."""
        for app in self.layout.apps():
            run = self.layout.run_file(app)
            try:
                record = json.loads(run.read_text())
            except (OSError, ValueError):
                continue
            pid = int(record.get("pid") or 0)
            if pid > 0 and _starttime(pid) == record.get("starttime"):
                log.info("stopping %s (pid %d) left by a previous agent", app, pid)
                _kill_group(pid, STOP_TIMEOUT_S)
            elif run_id := record.get("run_id"):  # killed between spawn and the pid record
                for found in _pids_with_env(f"{RUN_ID_ENV}={run_id}"):
                    with contextlib.suppress(ProcessLookupError):
                        group = os.getpgid(found)
                        if group != os.getpgrp():
                            log.info("stopping %s (pid %d) left by a previous agent", app, found)
                            _kill_group(group, STOP_TIMEOUT_S)
            run.unlink(missing_ok=True)

    def start(self, app: str) -> None:
        """Start `app` from `current/`; no-op if it runs or has no current version."""
        self._held.discard(app)
        if self.alive(app):
            return
        version = files.read_current(self.layout.app_dir(app))
        if version is None:
            return
        previous = self._procs.pop(app, None)
        # Recorded before the spawn: an agent killed between fork and the pid record below
        # must not leave an app nobody knows about (reap_orphans finds it by this id).
        run_id = secrets.token_hex(8)
        run = {"run_id": run_id, "version": version}
        files.write_atomically(self.layout.run_file(app), json.dumps(run).encode())
        popen = self._spawn(app, version, run_id)
        proc = _Proc(popen=popen, version=version, started=time.monotonic())
        if previous is not None and previous.version == version:
            proc.restarts = previous.restarts
        self._procs[app] = proc
        if proc.popen is not None:
            pid = proc.popen.pid
            record = {"pid": pid, "starttime": _starttime(pid), **run}
            files.write_atomically(self.layout.run_file(app), json.dumps(record).encode())
            log.info("started %s %s (pid %d)", app, version, pid)

    def _spawn(self, app: str, version: str, run_id: str) -> subprocess.Popen[bytes] | None:
        current = self.layout.current(app)
        self.layout.make_app(app)
        config = self.layout.app_config(app)
        if not config.exists():
            files.write_atomically(config, b"{}\n")
        env = {
            **self.env,
            "UPTEND_APP": app,
            "UPTEND_VERSION": version,
            "UPTEND_STATE_DIR": str(self.layout.app_state(app)),
            "UPTEND_CONFIG_FILE": str(config),
            RUN_ID_ENV: run_id,
        }
        with self.layout.app_log(app, version).open("ab") as out:
            try:
                command = read_manifest(current).app.command
                return subprocess.Popen(
                    command,
                    cwd=current,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except (OSError, ConfigError) as e:
                out.write(f"uptend: cannot start {app} {version}: {e}\n".encode())
                log.warning("cannot start %s %s: %s", app, version, e)
                return None

    def stop(self, app: str, *, hold: bool = True) -> None:
        """Stop `app` (SIGTERM to its group, SIGKILL after a timeout); held: no restart."""
        if hold:
            self._held.add(app)
        proc = self._procs.pop(app, None)
        if proc is not None and proc.popen is not None:
            _stop_child(proc.popen)
        self.layout.run_file(app).unlink(missing_ok=True)

    def stop_all(self) -> None:
        for app in list(self._procs):
            self.stop(app)

    def alive(self, app: str) -> bool:
        proc = self._procs.get(app)
        return proc is not None and proc.exit_code() is None

    def running_version(self, app: str) -> str | None:
        proc = self._procs.get(app)
        return proc.version if proc is not None and proc.exit_code() is None else None

    def exit_code(self, app: str) -> int | None:
        proc = self._procs.get(app)
        return None if proc is None else proc.exit_code()

    def tick(self, apps: list[str]) -> None:
        """Start apps not running; restart dead ones once their backoff has passed."""
        now = time.monotonic()
        for app in apps:
            if app in self._held:
                continue
            proc = self._procs.get(app)
            if proc is None:
                self.start(app)
                continue
            code = proc.exit_code()
            if code is None:
                if now - proc.started > STABLE_AFTER_S:
                    proc.restarts = 0
            elif proc.restart_at is None:
                proc.restarts += 1
                delay = retry_delay_s(
                    proc.restarts, base_s=RESTART_BASE_S, cap_s=RESTART_CAP_S, rand=0.5
                )
                proc.restart_at = now + delay
                log.warning(
                    "%s %s exited with %d; restart %d in %.1fs",
                    app,
                    proc.version,
                    code,
                    proc.restarts,
                    delay,
                )
            elif now >= proc.restart_at:
                self.start(app)
