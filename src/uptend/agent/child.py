"""The worker child: `python -m uptend.agent.child` does jobs one after another, then exits.

The agent starts it (`worker.Workers`) for the work that needs TUF, HTTPS and the archive
code, so that only this short-lived process ever imports them, and for the system's
installers (dpkg, rpm, an installer command: `activate`); the look-up, fetch and
stage of one update run in one child, which exits when the agent closes its input. Each
request is one JSON line on stdin; it says progress and each result as JSON lines on
stdout (`agent/worker.py` has the protocol, `agent/jobs.py` the shapes) and classifies its
own failures with `faults.classify`; a bug ends it with a traceback on stderr, which the
agent takes as a transient fault. It never writes the journal (the agent alone does; an
activation points `current` once the package manager succeeded, the journal still says
activating, so a kill between the two repeats the idempotent install) and
never takes the data-dir lock (its agent holds it for both of them); it dies with its
agent, so no orphan keeps writing into staging.
"""

import contextlib
import ctypes
import ctypes.util
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from uptend.agent import faults
from uptend.agent.crashpoints import WORKER_ENV
from uptend.agent.layout import Layout
from uptend.agent.observe import Span, no_span
from uptend.agent.worker import Context

MAX_REQUEST = 1 << 20
PROGRESS_EVERY_S = 0.1
PR_SET_PDEATHSIG = 1


def answer(kind: str, request: dict[str, Any], ctx: Context, span: Span = no_span) -> Any:
    """Do the job `kind` asks for; its result as JSON-ready values (jobs.py decodes them)."""
    layout = Layout(Path(request["root"]))
    if kind == "config":  # first, and without the release code: a config goes out sooner
        from uptend.agent import configfetch

        return configfetch.fetch(
            layout,
            request["metadata_url"],
            request["targets_url"],
            request["app"],
            int(request["version"]),
            request["path"],
            ctx,
        )
    if kind == "activate":  # the system's installer (dpkg, rpm, ...): no release code either
        from uptend.agent import jobs
        from uptend.agent.installers import for_version

        version = request["version"]
        return jobs.activation(for_version(layout, request["app"], version), version)
    from uptend.agent import artifacts, jobs, lookup  # the release code: tuf, pydantic, archives
    from uptend.agent.installers import for_kind

    match kind:
        case "lookup":
            pre = jobs.preconditions_from(request["preconditions"])
            asks = jobs.asks_from(request["asks"])
            found = lookup.look(layout, request["metadata_url"], pre, asks, ctx)
            return {app: jobs.answer_to(a) for app, a in found.items()}
        case "fetch":
            signed = artifacts.signed(layout, request["app"], request["version"])
            artifacts.fetch(layout, signed, request["targets_url"], ctx, span)
            return "fetched"
        case "stage":
            signed = artifacts.signed(layout, request["app"], request["version"])
            installer = for_kind(signed.custom.kind.value, layout, signed.custom.app)
            installer.stage(signed, artifacts.artifact(layout, signed), ctx, span)
            return "staged"
    raise ValueError(f"no such job: {kind!r}")


class _Out:
    """The child's side of the pipe: progress at most every 0.1 s, then one last line."""

    def __init__(self) -> None:
        self._next = 0.0

    def next_job(self) -> None:
        self._next = 0.0

    def write(self, message: dict[str, Any]) -> None:
        sys.stdout.buffer.write(json.dumps(message).encode() + b"\n")
        sys.stdout.buffer.flush()

    def progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now >= self._next or done >= total:
            self._next = now + PROGRESS_EVERY_S
            self.write({"progress": [done, total]})

    def check(self) -> None:
        """Nothing to do: the agent cancels a child by killing it."""

    @contextlib.contextmanager
    def span(self, step: str) -> Iterator[None]:
        """Time a step for the agent's observer (perf_counter is the same clock in both)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.write({"span": [step, start, time.perf_counter()]})


def _die_with_agent() -> None:
    """SIGKILL this child when its agent dies (even of kill -9); exit if it already has."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if str(os.getppid()) != os.environ.get(WORKER_ENV):
        sys.exit("the agent that started this worker is gone")


def main(argv: list[str]) -> int:
    if argv:
        sys.exit("usage: python -m uptend.agent.child < requests (one JSON line each)")
    _die_with_agent()
    out = _Out()
    while line := sys.stdin.buffer.readline(MAX_REQUEST):
        message = json.loads(line)
        kind, request = message["kind"], message["request"]
        out.next_job()
        try:
            value = answer(kind, request, out, out.span)
        except Exception as e:
            found = faults.classify(e, staging=kind == "stage")
            if found is None:
                raise  # a bug: the traceback goes to the agent's stderr
            out.write({"fault": found.fault.value, "reason": found.reason})
            continue
        out.write({"result": value})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
