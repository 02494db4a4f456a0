"""Work that must not block the loop, as jobs the loop polls: on a thread, or in a child.

The loop starts a job, polls `done()` at each tick, takes its `result()`, shows its
`progress` and may `cancel()` it. Two kinds of job have that one interface (`Work`):

`Job` runs a function on a daemon thread of this process: probes and clean-up, work that
needs nothing heavy. `ChildJob` runs `python -m uptend.agent.child <kind>` for the work that
needs TUF, HTTPS and the archive code, so that the long-lived agent never imports them: the
child reads its request (one JSON object) on stdin, writes JSON lines on stdout, exits:

    {"progress": [done, total]}      any number of times
    {"result": <json>}               or {"fault": "<faults.Fault>", "reason": "..."}, once, last

The child's output is parsed as hostile: each line is bounded, and a child that dies, is
killed, hangs up without its last line or writes anything else is `faults.WorkerError`,
a transient fault. `cancel()` kills the child's process group (SIGTERM, then SIGKILL).
`in_thread` runs the same child code on a thread instead, for unit tests.
"""

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any, Generic, Protocol, TypeVar

from uptend.agent import faults
from uptend.agent.crashpoints import WORKER_ENV

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
log = logging.getLogger("uptend.agent")
CHILD_MODULE = "uptend.agent.child"
MAX_LINE = 1 << 20  # bytes: a look-up's answers for every app fit many times over
KILL_GRACE_S = 0.2  # between SIGTERM and SIGKILL of a cancelled child


class CancelledError(Exception):
    """Raised inside a job that noticed `cancelled`, and by `result()` of a cancelled job."""


class Progress:
    """Bytes done of total, written by the job, read by the loop's status."""

    def __init__(self) -> None:
        self.done = 0
        self.total = 0

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total


class Context(Protocol):
    """What the work inside a job sees: say progress, stop where it is cancelled."""

    def progress(self, done: int, total: int) -> None: ...

    def check(self) -> None: ...


OnSpan = Callable[[str, float, float], None]  # step, start, end (time.perf_counter)


def _ignore(_step: str, _start: float, _end: float) -> None:
    pass


class Work(Protocol[T_co]):
    """What the loop polls, whether the work runs on a thread or in a child."""

    name: str
    on_span: OnSpan  # told of each step the work times (agent/observe.py), from any thread
    progress: Progress

    def done(self) -> bool: ...

    def result(self) -> T_co: ...

    def cancel(self, wait_s: float = 0.0) -> None: ...


class Spawn(Protocol):
    """How a child job is started: `in_child` (the agent) or `in_thread` (unit tests)."""

    def __call__(
        self, name: str, kind: str, request: dict[str, Any], decode: Callable[[Any], T]
    ) -> Work[T]: ...


class Job(Generic[T]):
    """`work(job)` on a daemon thread: a job stuck in a system call never keeps the agent."""

    def __init__(self, name: str, work: Callable[["Job[T]"], T]) -> None:
        self.name = name
        self.cancelled = threading.Event()
        self.progress = Progress()
        self.on_span: OnSpan = _ignore
        self._work = work
        self._result: T | None = None
        self._error: BaseException | None = None
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = self._work(self)
        except BaseException as e:  # noqa: BLE001 - handed to the loop, which decides
            self._error = e
        finally:
            self._finished.set()

    def check(self) -> None:
        """Call from inside the job: stop here if the job was cancelled."""
        if self.cancelled.is_set():
            raise CancelledError(self.name)

    def done(self) -> bool:
        return self._finished.is_set()

    def result(self) -> T:
        """The job's return value; re-raises what it raised."""
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]

    def cancel(self, wait_s: float = 0.0) -> None:
        self.cancelled.set()
        self._finished.wait(wait_s)


class ChildJob(Generic[T]):
    """`python -m uptend.agent.child <kind>` in its own process group, read on a thread."""

    def __init__(
        self, name: str, kind: str, request: dict[str, Any], decode: Callable[[Any], T]
    ) -> None:
        self.name, self.kind = name, kind
        self.progress = Progress()
        self.on_span: OnSpan = _ignore
        self._decode = decode
        self._final: tuple[str, Any] | None = None  # ("result", value) | ("fault", (f, why))
        self._garbage = ""
        self._cancelled = False
        self._finished = threading.Event()
        try:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env={**os.environ, WORKER_ENV: str(os.getpid())},
                start_new_session=True,  # its own process group: cancel kills all of it
            )
        except OSError as e:  # no memory, no pids, no fds left: a transient fault too
            self._garbage = f"cannot start the worker: {e}"
            self._finished.set()
            return
        body = json.dumps(request).encode()
        self._thread = threading.Thread(target=self._talk, args=(body,), name=name, daemon=True)
        self._thread.start()

    def command(self) -> list[str]:
        return [sys.executable, "-m", CHILD_MODULE, self.kind]

    def _talk(self, body: bytes) -> None:
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None
        assert stdout is not None
        try:
            with contextlib.suppress(BrokenPipeError), stdin:
                stdin.write(body)
            self._read(stdout)
        except (OSError, ValueError) as e:  # the pipe itself failed
            self._garbage = self._garbage or f"cannot talk to the worker: {e}"
        finally:
            if self._garbage:
                self._kill()
            self.proc.wait()
            stdout.close()
            self._finished.set()

    def _read(self, out: IO[bytes]) -> None:
        while line := out.readline(MAX_LINE + 1):
            if self._final is not None or not line.endswith(b"\n"):
                self._garbage = f"the worker wrote {len(line)} bytes out of turn"
                return
            try:
                message = json.loads(line)
            except ValueError:
                self._garbage = f"the worker wrote what is not JSON: {line[:80]!r}"
                return
            match message:
                case {"progress": [int(done), int(total)]}:
                    self.progress(done, total)
                case {"span": [str(step), float(start), float(end)]}:
                    self.on_span(step, start, end)
                case {"result": value}:
                    self._final = ("result", value)
                case {"fault": str(fault), "reason": str(reason)}:
                    self._final = ("fault", (fault, reason))
                case _:
                    self._garbage = f"the worker wrote an unknown message: {line[:80]!r}"
                    return

    def _kill(self) -> None:  # the child's group: whatever it started goes with it
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def done(self) -> bool:
        return self._finished.is_set()

    def result(self) -> T:
        """The decoded result; CancelledError, faults.ReportedError or faults.WorkerError."""
        if self._cancelled:
            raise CancelledError(self.name)
        if self._garbage:
            raise faults.WorkerError(f"{self.name}: {self._garbage}")
        code = self.proc.returncode
        if self._final is None or code != 0:
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"code {code}"
            raise faults.WorkerError(f"{self.name}: the worker exited ({how}) without a result")
        what, value = self._final
        if what == "fault":
            raise faults.reported(*value)
        try:
            return self._decode(value)
        except (KeyError, TypeError, ValueError) as e:
            raise faults.WorkerError(f"{self.name}: the worker's result is malformed: {e}") from e

    def cancel(self, wait_s: float = 0.0) -> None:
        """SIGTERM the child's group, SIGKILL it after a grace; wait up to `wait_s` for it."""
        if self.done():
            return
        self._cancelled = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        if not self._finished.wait(min(KILL_GRACE_S, wait_s) or KILL_GRACE_S):
            self._kill()
            self._finished.wait(wait_s)


def in_child(name: str, kind: str, request: dict[str, Any], decode: Callable[[Any], T]) -> Work[T]:
    return ChildJob(name, kind, request, decode)


def in_thread(name: str, kind: str, request: dict[str, Any], decode: Callable[[Any], T]) -> Work[T]:
    """The child's code on a thread of this process, errors raised as they are (unit tests)."""
    from uptend.agent import child  # the heavy code, in tests only

    wire = json.loads(json.dumps(request))  # what the child would read

    def work(job: Job[T]) -> T:
        @contextlib.contextmanager
        def span(step: str) -> Iterator[None]:
            start = time.perf_counter()
            try:
                yield
            finally:
                job.on_span(step, start, time.perf_counter())

        return decode(json.loads(json.dumps(child.answer(kind, wire, job, span))))

    return Job(name, work)
