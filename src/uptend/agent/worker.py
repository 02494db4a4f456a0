"""Work that must not block the loop, as jobs the loop polls: on a thread, or in a child.

The loop starts a job, polls `done()` at each tick, takes its `result()`, shows its
`progress` and may `cancel()` it. Two kinds of job have that one interface (`Work`):

`Job` runs a function on a daemon thread of this process: probes and clean-up, work that
needs nothing heavy. A `ChildJob` runs in a worker child (`python -m uptend.agent.child`,
started by `Workers`) for the work that needs TUF, HTTPS and the archive code, so that the
long-lived agent never imports them, and for the system's installers (dpkg, rpm), so that
however long they take the loop goes on. The child serves one job after another: it reads a
request line on stdin, writes JSON lines on stdout, and exits at the end of its input:

    agent -> child   {"kind": "lookup" | "fetch" | "stage" | "config" | "activate", ...}
    child -> agent   {"progress": [done, total]}      any number of times
                     {"span": [step, start, end]}     any number of times
                     {"result": <json>}               or {"fault": "<faults.Fault>",
                                                         "reason": "..."}: once, last

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
from typing import Any, Generic, Protocol, TypeVar

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
    """Where child jobs run: `Workers` (the agent) or `in_thread` (unit tests)."""

    def __call__(
        self, name: str, kind: str, request: dict[str, Any], decode: Callable[[Any], T]
    ) -> Work[T]: ...

    def close_idle(self) -> None:
        """End what waits for work (at the end of each tick of the loop)."""


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
    """One job handed to a worker child (`Workers`); ended by the child's reader thread."""

    def __init__(
        self,
        name: str,
        kind: str,
        request: dict[str, Any],
        decode: Callable[[Any], T],
        on_done: Callable[[], None] = lambda: None,
    ) -> None:
        self.name, self.kind, self.request = name, kind, request
        self.progress = Progress()
        self.on_span: OnSpan = _ignore
        self.child: _Child | None = None  # the process it runs in, once handed one
        self._decode = decode
        self._on_done = on_done
        self._final: tuple[str, Any] | None = None  # ("result", value) | ("fault", (f, why))
        self._garbage = ""
        self._code: int | None = None  # the child's exit code, if it ended without a result
        self._cancelled = False
        self._finished = threading.Event()

    def _end(
        self, final: tuple[str, Any] | None, garbage: str = "", code: int | None = None
    ) -> None:
        self._final, self._garbage, self._code = final, garbage, code
        self._finished.set()
        self._on_done()

    def done(self) -> bool:
        return self._finished.is_set()

    def result(self) -> T:
        """The decoded result; CancelledError, faults.ReportedError or faults.WorkerError.

        Taking it makes the child idle: only then may the loop hand it the next job, or
        close it (a job that ends in the middle of a tick keeps its child for the next).
        """
        if self.child is not None:
            self.child.release(self)
        if self._cancelled:
            raise CancelledError(self.name)
        if self._garbage:
            raise faults.WorkerError(f"{self.name}: {self._garbage}")
        if self._final is None:
            code = self._code
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
        if self.done() or self.child is None:
            return
        self._cancelled = True
        self.child.signal(signal.SIGTERM)
        if not self._finished.wait(min(KILL_GRACE_S, wait_s) or KILL_GRACE_S):
            self.child.signal(signal.SIGKILL)
            self._finished.wait(wait_s)


class _Child:
    """`python -m uptend.agent.child` in its own process group, serving one job at a time.

    Its reader thread reads every line the child writes and hands it to the job in flight;
    a line with no job in flight, or any line that is not the protocol, ends the child
    (SIGKILL) and, with it, its job. A child is never reused once it has failed.
    """

    def __init__(self, command: list[str], job: ChildJob[Any]) -> None:
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, WORKER_ENV: str(os.getpid())},
            start_new_session=True,  # its own process group: cancel kills all of it
        )
        self.job: ChildJob[Any] | None = None
        self.ended = False  # the process is gone (or going): never hand it a job
        self._garbage = ""
        self._lock = threading.Lock()  # between a job handed on and the reader's end
        self._read_all_done = False
        self._reader = threading.Thread(target=self._read_all, name="worker", daemon=True)
        self.run(job)  # before the reader starts: the first line the child writes is this job's
        self._reader.start()

    @property
    def idle(self) -> bool:
        return self.job is None and not self.ended

    def release(self, job: ChildJob[Any]) -> None:
        with self._lock:
            if self.job is job and job.done():
                self.job = None

    def run(self, job: ChildJob[Any]) -> None:
        """Hand `job` to this (idle) child; the request is written off the loop."""
        job.child = self
        with self._lock:
            gone = self._read_all_done  # it died since it was idle: its reader has ended
            if not gone:
                self.job = job
        if gone:
            job._end(None, "the worker exited before it got its job", self.proc.returncode)
            return
        line = json.dumps({"kind": job.kind, "request": job.request}).encode() + b"\n"
        threading.Thread(target=self._write, args=(line,), name=job.name, daemon=True).start()

    def close(self) -> None:
        """No more jobs: the child exits when it reads the end of its input."""
        self.ended = True
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()

    def signal(self, signum: int) -> None:
        """Signal the child's whole group: whatever it started goes with it."""
        self.ended = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)

    def _fail(self, why: str) -> None:
        self._garbage = self._garbage or why
        self.signal(signal.SIGKILL)

    def _write(self, line: bytes) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            stdin.write(line)
            stdin.flush()
        except (BrokenPipeError, ValueError):  # it is gone: the reader says how it ended
            pass
        except OSError as e:
            self._fail(f"cannot talk to the worker: {e}")

    def _read_all(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            while line := stdout.readline(MAX_LINE + 1):
                if why := self._take(line):
                    self._fail(why)
                    break
        except (OSError, ValueError) as e:  # the pipe itself failed
            self._fail(f"cannot talk to the worker: {e}")
        finally:
            self.ended = True
            code = self.proc.wait()
            stdout.close()
            if self.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    self.proc.stdin.close()
            with self._lock:
                self._read_all_done = True
                job, self.job = self.job, None
            if job is not None and not job.done():
                job._end(None, self._garbage, code)

    def _take(self, line: bytes) -> str:
        """Hand one line to the job in flight; why the child is broken, or ''."""
        job = self.job
        if job is None or job.done() or not line.endswith(b"\n"):
            return f"the worker wrote {len(line)} bytes out of turn"
        try:
            message = json.loads(line)
        except ValueError:
            return f"the worker wrote what is not JSON: {line[:80]!r}"
        match message:
            case {"progress": [int(done), int(total)]}:
                job.progress(done, total)
            case {"span": [str(step), float(start), float(end)]}:
                job.on_span(step, start, end)
            case {"result": value}:
                job._end(("result", value))
            case {"fault": str(fault), "reason": str(reason)}:
                job._end(("fault", (fault, reason)))
            case _:
                return f"the worker wrote an unknown message: {line[:80]!r}"
        return ""


class Workers:
    """The agent's worker children: a job goes to an idle child, else to a new one.

    The look-up, fetch and stage of one update are handed on within one tick of the loop
    (a child is idle once the loop has taken its job's result), so they run in one child,
    which pays the imports of TUF and cryptography once; the loop calls `close_idle` at the
    end of each tick, so no child outlives the work it was for.
    `on_done` is called (from a reader thread) when any job ends: it wakes the loop.
    """

    def __init__(
        self, on_done: Callable[[], None] = lambda: None, command: list[str] | None = None
    ) -> None:
        self.on_done = on_done
        self.command = command or [sys.executable, "-m", CHILD_MODULE]
        self.children: list[_Child] = []

    def __call__(
        self, name: str, kind: str, request: dict[str, Any], decode: Callable[[Any], T]
    ) -> Work[T]:
        job = ChildJob(name, kind, request, decode, self.on_done)
        self.children = [c for c in self.children if not c.ended]
        child = next((c for c in self.children if c.idle), None)
        if child is not None:
            child.run(job)
            return job
        try:
            self.children.append(_Child(self.command, job))
        except OSError as e:  # no memory, no pids, no fds left: a transient fault too
            job._end(None, f"cannot start the worker: {e}")
        return job

    def close_idle(self) -> None:
        """End every child that has no job in flight (it exits at the end of its input)."""
        for child in self.children:
            if child.idle:
                child.close()
        self.children = [c for c in self.children if not c.ended]


class InThread:
    """The child's code on a thread of this process, errors raised as they are (unit tests)."""

    def __call__(
        self, name: str, kind: str, request: dict[str, Any], decode: Callable[[Any], T]
    ) -> Work[T]:
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

    def close_idle(self) -> None:
        """Nothing to end: each job's thread ends with it."""


in_thread = InThread()
