"""Which process is which (Linux /proc): lets an app outlive its agent without a reused pid.

The agent records each app process in apps/<app>/run.json (a `Record`). A process found at
that pid is the app only when its start time (/proc/<pid>/stat field 22, clock ticks since
boot: a reused pid always has a later one) and the run id in its initial environment
(/proc/<pid>/environ, fixed at exec; a random 64-bit id nobody else carries) both match. It
is adopted only when, also, it was started from the version `current` points at now
(recorded version dir, and UPTEND_VERSION in that same environ). The working directory is
not compared: an app may chdir.

An adopted process is not our child: no waitpid, no exit status. A pidfd (pidfd_open, Linux
5.3) names that very process, so its exit is seen even if the pid is reused meanwhile.
"""

import json
import os
import select
import subprocess
import time
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol, Self

RUN_ID_ENV = "UPTEND_RUN_ID"  # marks an app's processes, to find them after a kill -9
VERSION_ENV = "UPTEND_VERSION"
UNKNOWN_EXIT = 255  # what an adopted process "exited with": its status went to its parent


@dataclass(frozen=True, slots=True)
class Record:
    """run.json: which process runs an app, written before and after each spawn."""

    run_id: str
    version: str
    version_dir: str = ""  # "" in a record an older agent wrote: never adopted, only reaped
    agent: int = 0  # the pid of the agent that supervises it (for operators and tests)
    pid: int | None = None  # None: the agent died between this record and the spawn
    starttime: str | None = None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def load(cls, path: Path) -> Self | None:
        """The record at `path`, or None if it is missing or damaged (then nothing is ours)."""
        try:
            raw = json.loads(path.read_bytes())
            record = cls(**raw)
        except (OSError, ValueError, TypeError):
            return None
        pid: object = record.pid
        pid_ok = pid is None or (type(pid) is int and pid > 0)
        return record if pid_ok and isinstance(raw["run_id"], str) and record.run_id else None


@dataclass(frozen=True, slots=True)
class Facts:
    """What /proc says about a live (not zombie) pid now."""

    starttime: str
    run_id: str | None  # RUN_ID_ENV in its initial environment
    version: str | None  # VERSION_ENV there


class Verdict(Enum):
    ADOPT = "adopt"  # the recorded app, on the current version: keep it running
    REAP = "reap"  # the recorded app, but not the version to run now: stop it
    GONE = "gone"  # no such process any more: start the app afresh
    FOREIGN = "foreign"  # the pid now names another process: leave that one alone


def judge(record: Record, facts: Facts | None, current_dir: str | None) -> Verdict:
    """Whether the process now at `record.pid` is the recorded app, and may keep running.

    `current_dir` is the version dir `current` points at (None: no version to run).
    """
    if facts is None:
        return Verdict.GONE
    if facts.starttime != record.starttime or facts.run_id != record.run_id:
        return Verdict.FOREIGN
    if record.version_dir != current_dir or facts.version != record.version:
        return Verdict.REAP
    return Verdict.ADOPT


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on: the comm before it may hold spaces."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def starttime(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return None if fields is None else fields[19]


def facts(pid: int) -> Facts | None:
    """None when no live process has `pid` (an exited one nobody reaped yet counts as gone)."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except FileNotFoundError:
        return None
    except OSError:  # another user's process: not one of ours
        environ = []
    env = dict(e.decode("utf-8", "replace").partition("=")[::2] for e in environ if b"=" in e)
    return Facts(starttime=fields[19], run_id=env.get(RUN_ID_ENV), version=env.get(VERSION_ENV))


def pids_with_env(entry: str) -> list[int]:
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


class Process(Protocol):
    """An app's process, whether the agent spawned it or adopted it."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None:
        """Its exit code once it has exited, else None."""

    def wait(self, timeout_s: float | None) -> bool:
        """Block until it exits (True) or `timeout_s` passes (False)."""

    def close(self) -> None:
        """Let go of it (it may keep running)."""


class Child:
    """A process this agent spawned: waitpid gives its exit code."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout_s: float | None) -> bool:
        try:
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    def close(self) -> None:
        pass


class Adopted:
    """A process a previous agent spawned, watched through a pidfd (see the module doc).

    Without pidfds (a kernel before 5.3) it is watched by pid and start time instead.
    """

    def __init__(self, pid: int, starttime: str | None, pidfd: int = -1) -> None:
        self._pid, self._starttime, self._pidfd = pid, starttime, pidfd
        self._exited = False

    @classmethod
    def open(cls, pid: int, starttime: str | None) -> Self | None:
        """A handle on whatever has `pid` now: check it is the app with `facts` after this."""
        try:
            return cls(pid, starttime, os.pidfd_open(pid))
        except ProcessLookupError:
            return None
        except OSError:  # ENOSYS: no pidfds on this kernel
            return cls(pid, starttime)

    @property
    def pid(self) -> int:
        return self._pid

    def poll(self) -> int | None:
        return UNKNOWN_EXIT if self.wait(0) else None

    def wait(self, timeout_s: float | None) -> bool:
        if self._exited:
            return True
        if self._pidfd >= 0:
            poller = select.poll()
            poller.register(self._pidfd, select.POLLIN)
            self._exited = bool(poller.poll(None if timeout_s is None else timeout_s * 1000))
            return self._exited
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not (gone := self._gone()) and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.05)
        self._exited = gone
        return gone

    def _gone(self) -> bool:
        now = facts(self._pid)
        return now is None or now.starttime != self._starttime

    def close(self) -> None:
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1


def find_run(run_id: str) -> list[Adopted]:
    """Handles on the live processes that carry `run_id` (a run whose pid was never recorded)."""
    found: list[Adopted] = []
    for pid in pids_with_env(f"{RUN_ID_ENV}={run_id}"):
        handle = Adopted.open(pid, starttime(pid))
        now = None if handle is None else facts(pid)  # checked again: the pid is held now
        if handle is not None and now is not None and now.run_id == run_id:
            found.append(handle)
        elif handle is not None:
            handle.close()
    return found
