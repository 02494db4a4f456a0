"""Keeps each app's process running: start from `current/`, restart with backoff, stop cleanly.

Apps run in their own session (process group), with stdin from /dev/null and their output
appended to their log file, so nothing ties them to the agent: a SIGKILL, a crash or a
terminal's SIGHUP to the agent leaves them running. A record in apps/<app>/run.json (see
`procs`) lets the next agent adopt each app that is still the very process it names, on the
current version, and stop what is stale, instead of restarting every app. The record is
written before the spawn with a run id the app carries in its environment (UPTEND_RUN_ID),
so even a kill between fork and the pid record leaves no process nobody knows about.

Stopping never blocks the loop: `stop` sends SIGTERM and returns; the caller polls
`stopped` at its ticks, which SIGKILLs the group once `STOP_TIMEOUT_S` has passed (an app
that ignores SIGTERM). Only `stop_all`, at the agent's exit, waits.
"""

import contextlib
import dataclasses
import json
import logging
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from uptend.agent import files, procs
from uptend.agent.layout import Layout
from uptend.agent.procs import RUN_ID_ENV, Record, Verdict
from uptend.errors import ConfigError
from uptend.policy.backoff import retry_delay_s
from uptend.protocol.limits import MAX_INT as MAX_CRASHES
from uptend.protocol.manifest import MANIFEST_NAME, Manifest, parse_manifest

log = logging.getLogger("uptend.agent")

STOP_TIMEOUT_S = 10.0
RESTART_BASE_S = 1.0
RESTART_CAP_S = 60.0
STABLE_AFTER_S = 30.0  # a process that ran this long resets the restart backoff
ADOPTED_EXIT = "exited (exit status unknown: not our child, adopted from the last agent)"
CRASHES_FILE = "crashes.json"  # {"version", "crashes"}: the count outlives an agent restart


@dataclass(slots=True)
class _Proc:
    process: procs.Process | None  # None: the command could not be started
    version: str
    started: float
    restarts: int = 0  # since it last ran stably: the restart backoff's count
    restart_at: float | None = None
    crashes: int = 0  # since this version started, never reset: reported (a rollout's soak)

    def exit_code(self) -> int | None:
        return 127 if self.process is None else self.process.poll()

    def ended(self) -> str | None:
        """How the process ended, in words (None while it runs): never a made-up code."""
        if self.process is None:
            return "could not be started"
        code = self.process.poll()
        if code is None:
            return None
        if isinstance(self.process, procs.Adopted):  # its status went to its parent, not us
            return ADOPTED_EXIT
        return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"


@dataclass(slots=True)
class Stopping:
    """An app's processes sent SIGTERM (by `stop`, or at start-up: stale), not all gone yet."""

    processes: list[procs.Process]
    groups: set[int]  # their process groups: apps lead their own, so usually {the app's pid}
    kill_at: float  # monotonic: SIGKILL the groups from then on

    @classmethod
    def terminate(
        cls, processes: list[procs.Process], groups: set[int], timeout_s: float
    ) -> "Stopping":
        """SIGTERM `groups` now; `gone` SIGKILLs them once `timeout_s` has passed."""
        for group in groups:
            _signal_group(group, signal.SIGTERM)
        return cls(processes, groups, time.monotonic() + timeout_s)

    def gone(self) -> bool:
        """Whether all have exited (then the groups' stragglers are killed); never blocks."""
        live = [p for p in self.processes if p.poll() is None]
        if live:
            if time.monotonic() < self.kill_at:
                return False
            for group in self.groups:
                _signal_group(group, signal.SIGKILL)
            if not all(p.wait(0.0) for p in live):
                return False
        for group in self.groups:
            with contextlib.suppress(PermissionError):
                _signal_group(group, signal.SIGKILL)  # children the app left behind
        for process in self.processes:
            process.close()
        return True

    def wait(self, until: float | None) -> None:
        """Block until all have exited or the monotonic time `until` (None: for ever)."""
        for process in self.processes:
            process.wait(None if until is None else max(0.0, until - time.monotonic()))


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)  # apps lead their own session: the group id is the app's pid


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


class Supervisor:
    def __init__(self, layout: Layout, env: dict[str, str] | None = None) -> None:
        self.layout = layout
        self.env = env if env is not None else dict(os.environ)
        self._procs: dict[str, _Proc] = {}
        self._held: set[str] = set()  # apps not to restart (stopped for a switch)
        self._stopping: dict[str, Stopping] = {}

    def adopt(self) -> None:
        """Take over the apps a previous agent left running; stop what it left stale.

        Never blocks: what is stale is sent SIGTERM and polled like any stop (`tick` starts
        the current version once it is gone; its record stays until then, for the next
        agent if this one dies first). Apps whose recorded process is gone are left for
        `tick` to start again.
        """
        for app in self.layout.apps():
            run = self.layout.run_file(app)
            record = Record.load(run)
            if record is None:
                pass
            elif record.pid is None:  # killed between the record and the spawn
                if self._reap_run(app, record.run_id):
                    continue
            elif self._adopt(app, record, record.pid):
                continue
            run.unlink(missing_ok=True)

    def _adopt(self, app: str, record: Record, pid: int) -> bool:
        """Supervise the recorded process if it is still the app (`procs.judge`).

        Ours but stale: stop it (True: the record stays until it is gone). Another process
        with that pid: leave it alone.
        """
        process = procs.Adopted.open(pid, record.starttime)
        if process is None:
            return False
        verdict = procs.judge(record, procs.facts(pid), self._current_dir(app))
        if verdict is Verdict.ADOPT:
            self._procs[app] = _Proc(process, record.version, time.monotonic())
            adopted = dataclasses.replace(record, agent=os.getpid())
            files.write_atomically(self.layout.run_file(app), adopted.to_json())
            log.info("adopted %s %s (pid %d)", app, record.version, pid)
            return True
        if verdict is Verdict.REAP:
            log.info("stopping %s %s (pid %d): not the current version", app, record.version, pid)
            self._stopping[app] = Stopping.terminate([process], {pid}, STOP_TIMEOUT_S)
            return True
        if verdict is Verdict.FOREIGN:
            log.warning("%s: pid %d is another process now; left alone", app, pid)
        process.close()
        return False

    def _reap_run(self, app: str, run_id: str) -> bool:
        """Stop the processes of a run whose pid was never recorded (found by its run id)."""
        found = procs.find_run(run_id)
        if not found:
            return False
        groups: set[int] = set()
        for process in found:
            log.info("stopping %s (pid %d) left by a previous agent", app, process.pid)
            with contextlib.suppress(ProcessLookupError):
                groups.add(os.getpgid(process.pid))
        groups.discard(os.getpgrp())  # never the agent's own
        self._stopping[app] = Stopping.terminate(list(found), groups, STOP_TIMEOUT_S)
        return True

    def _current_dir(self, app: str) -> str | None:
        version = files.read_current(self.layout.app_dir(app))
        return None if version is None else str(self.layout.version_dir(app, version))

    def start(self, app: str) -> None:
        """Start `app` from `current/`; no-op if it runs, is still stopping or has no version."""
        if app in self._stopping:
            return
        self._held.discard(app)
        if self.alive(app):
            return
        version = files.read_current(self.layout.app_dir(app))
        if version is None:
            return
        previous = self._procs.pop(app, None)
        if previous is not None and previous.process is not None:
            previous.process.close()
        # Recorded before the spawn: an agent killed between fork and the pid record below
        # must not leave an app nobody knows about (`adopt` finds it by this id).
        record = Record(
            run_id=secrets.token_hex(8),
            version=version,
            version_dir=str(self.layout.version_dir(app, version)),
            agent=os.getpid(),
        )
        files.write_atomically(self.layout.run_file(app), record.to_json())
        popen = self._spawn(app, version, record.run_id)
        proc = _Proc(
            process=None if popen is None else procs.Child(popen),
            version=version,
            started=time.monotonic(),
        )
        if previous is not None and previous.version == version:
            proc.restarts, proc.crashes = previous.restarts, previous.crashes
        self._procs[app] = proc
        if popen is not None:
            spawned = dataclasses.replace(
                record, pid=popen.pid, starttime=procs.starttime(popen.pid)
            )
            files.write_atomically(self.layout.run_file(app), spawned.to_json())
            log.info("started %s %s (pid %d)", app, version, popen.pid)

    def _spawn(self, app: str, version: str, run_id: str) -> subprocess.Popen[bytes] | None:
        """Start the app detached from the agent: own session, output into its log file."""
        current = self.layout.current(app)
        self.layout.make_app(app)
        config = self.layout.app_config(app)
        if not config.exists():
            files.write_atomically(config, b"{}\n")
        env = {
            **self.env,
            "UPTEND_APP": app,
            procs.VERSION_ENV: version,
            "UPTEND_STATE_DIR": str(self.layout.app_state(app)),
            "UPTEND_CONFIG_FILE": str(config),
            RUN_ID_ENV: run_id,
        }
        log_path = self.layout.app_log(app, version)
        with open(log_path, "ab", opener=files.private_opener) as out:
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

    def stop(self, app: str) -> None:
        """SIGTERM `app`'s group and return at once; it is not restarted until `start`.

        Poll `stopped` until it says the app is gone (it SIGKILLs after `STOP_TIMEOUT_S`).
        """
        self._held.add(app)
        if app in self._stopping:
            return
        proc = self._procs.pop(app, None)
        if proc is not None and proc.process is not None:
            pid = proc.process.pid
            self._stopping[app] = Stopping.terminate([proc.process], {pid}, STOP_TIMEOUT_S)
            return
        self.layout.run_file(app).unlink(missing_ok=True)

    def stopped(self, app: str) -> bool:
        """Whether `app` is gone since `stop` (its run record then too); never blocks."""
        stopping = self._stopping.get(app)
        if stopping is None:
            return True
        if not stopping.gone():
            return False
        del self._stopping[app]
        # Removed only now: an agent killed while the app still ran leaves the record, and
        # the next agent adopts (then stops) the app instead of losing track of it.
        self.layout.run_file(app).unlink(missing_ok=True)
        return True

    def stop_all(self) -> None:
        """At the agent's exit: stop every app at once, then wait until all are gone."""
        for app in list(self._procs):
            self.stop(app)
        for app, stopping in list(self._stopping.items()):
            stopping.wait(stopping.kill_at)
            stopping.kill_at = 0.0
            while not self.stopped(app):
                stopping.wait(None)

    def shut_down(self, *, keep_apps: bool) -> None:
        """At agent exit: stop every app, or (keep_apps) leave them for the next agent to adopt."""
        if not keep_apps:
            self.stop_all()
            return
        for app, proc in self._procs.items():
            if proc.process is None:
                continue
            if proc.exit_code() is None:
                log.info("leaving %s %s running (pid %d)", app, proc.version, proc.process.pid)
            proc.process.close()
        self._procs.clear()
        for stopping in self._stopping.values():  # its record stays: the next agent stops it
            for process in stopping.processes:
                process.close()
        self._stopping.clear()

    def alive(self, app: str) -> bool:
        proc = self._procs.get(app)
        return proc is not None and proc.exit_code() is None

    def signal(self, app: str, signum: int) -> bool:
        """Send `signum` to `app`'s process (a config reload); False if it does not run."""
        proc = self._procs.get(app)
        if proc is None or proc.process is None or proc.exit_code() is not None:
            return False
        try:
            os.kill(proc.process.pid, signum)
        except ProcessLookupError:
            return False
        return True

    def running_version(self, app: str) -> str | None:
        proc = self._procs.get(app)
        return proc.version if proc is not None and proc.exit_code() is None else None

    def crashes(self, app: str) -> int:
        """How often `app`'s process ended by itself since its version started.

        Kept on disk too (`crashes.json` in the app's directory): an agent restart must not
        reset the count a rollout's soak judges, or restarting the agent would hide a crash.
        """
        proc = self._procs.get(app)
        version = proc.version if proc is not None else files.read_current(self.layout.app_dir(app))
        saved = 0 if version is None else self._saved_crashes(app, version)
        return max(saved, 0 if proc is None else proc.crashes)

    def _saved_crashes(self, app: str, version: str) -> int:
        try:
            saved = json.loads((self.layout.app_dir(app) / CRASHES_FILE).read_bytes()[:4096])
            n = saved["crashes"] if saved["version"] == version else 0
        except (OSError, ValueError, KeyError, TypeError):
            return 0  # none yet, or damaged: what memory counts stands
        return n if isinstance(n, int) and 0 <= n <= MAX_CRASHES else 0

    def _save_crashes(self, app: str, version: str, n: int) -> None:
        body = json.dumps({"version": version, "crashes": n}).encode()
        try:
            files.write_atomically(self.layout.app_dir(app) / CRASHES_FILE, body)
        except OSError as e:  # a full disk must not stop the supervisor: memory still counts
            log.warning("cannot record the crash count of %s: %s", app, e)

    def ended(self, app: str) -> str | None:
        """How `app`'s process ended, in words; None while it runs or before it is started."""
        proc = self._procs.get(app)
        return None if proc is None else proc.ended()

    def tick(self, apps: list[str]) -> None:
        """Start apps not running; restart dead ones once their backoff has passed."""
        now = time.monotonic()
        for app in apps:
            if app in self._held or not self.stopped(app):  # stale at start-up: still going
                continue
            proc = self._procs.get(app)
            if proc is None:
                self.start(app)
                continue
            ended = proc.ended()
            if ended is None:
                if now - proc.started > STABLE_AFTER_S:
                    proc.restarts = 0
            elif proc.restart_at is None:
                proc.restarts += 1
                proc.crashes = max(proc.crashes, self._saved_crashes(app, proc.version)) + 1
                self._save_crashes(app, proc.version, min(proc.crashes, MAX_CRASHES))
                delay = retry_delay_s(
                    proc.restarts, base_s=RESTART_BASE_S, cap_s=RESTART_CAP_S, rand=0.5
                )
                proc.restart_at = now + delay
                log.warning(
                    "%s %s %s; restart %d in %.1fs", app, proc.version, ended, proc.restarts, delay
                )
            elif now >= proc.restart_at:
                self.start(app)
