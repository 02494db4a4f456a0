"""Work that must not block the loop (fetch, stage, look-ups, probes, clean-up) on a thread.

The loop starts a `Job`, polls `done()` at each tick and takes its `result()`. A job sees
`cancelled` set when the agent stops or the update is abandoned and should return soon;
the thread is a daemon, so a job stuck in a system call never keeps the agent from exiting.
"""

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("uptend.agent")


class CancelledError(Exception):
    """Raised inside a job that noticed `cancelled`."""


class Progress:
    """Bytes done of total, written by the job, read by the loop's status."""

    def __init__(self) -> None:
        self.done = 0
        self.total = 0

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total


class Job(Generic[T]):
    def __init__(self, name: str, work: Callable[["Job[T]"], T]) -> None:
        self.name = name
        self.cancelled = threading.Event()
        self.progress = Progress()
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
