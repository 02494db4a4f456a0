"""Health probes of a new version: an HTTP GET (2xx = healthy) and a command (exit 0).

`ProbeRound` runs the configured probes once without blocking its caller: the loop calls
`poll()` at each tick. The HTTP probe runs on a worker thread (bounded by its timeout); the
command runs as a child in its own process group, killed with its children at the timeout.
"""

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import urllib3

from uptend.agent.worker import Job
from uptend.protocol.manifest import HealthSection


def http_probe(url: str, timeout_s: float) -> str | None:
    try:
        response = urllib3.request(
            "GET", url, timeout=urllib3.Timeout(total=timeout_s), retries=False
        )
    except urllib3.exceptions.HTTPError as e:
        return f"http probe {url} failed: {e}"
    if 200 <= response.status < 300:
        return None
    return f"http probe {url} answered {response.status}"


class ProbeRound:
    """One round of the probes; `poll()` -> (finished, reason of the failure or None)."""

    def __init__(self, health: HealthSection, cwd: Path, env: dict[str, str]) -> None:
        self.health, self.cwd, self.env = health, cwd, env
        url = health.http
        self._http: Job[str | None] | None = None
        if url is not None:
            self._http = Job("http-probe", lambda _job: http_probe(url, health.timeout))
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: tempfile._TemporaryFileWrapper[bytes] | None = None
        self._deadline = 0.0

    def poll(self) -> tuple[bool, str | None]:
        if self._http is not None:
            if not self._http.done():
                return False, None
            if (why := self._http.result()) is not None:
                return True, why
        command = self.health.command
        if command is None:
            return True, None
        if self._proc is None:
            return self._start(command)
        code = self._proc.poll()
        if code is None:
            if time.monotonic() < self._deadline:
                return False, None
            self.cancel()
            return (
                True,
                f"health command {command!r} hung for {self.health.timeout:g}s and was killed",
            )
        self._kill_group()
        if code != 0:
            out = self._output().strip()[-500:]
            return True, f"health command {command!r} exited {code}: {out}"
        return True, None

    def _start(self, command: list[str]) -> tuple[bool, str | None]:
        self._out = tempfile.NamedTemporaryFile(prefix="uptend-probe-")  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                command,
                cwd=self.cwd,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=self._out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as e:
            return True, f"health command {command!r} could not run: {e}"
        self._deadline = time.monotonic() + self.health.timeout
        return False, None

    def _output(self) -> str:
        if self._out is None:
            return ""
        self._out.seek(0)
        return self._out.read()[-4096:].decode("utf-8", "replace")

    def _kill_group(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)

    def cancel(self) -> None:
        """Kill a running probe command and its children (the agent stops, or it hung)."""
        self._kill_group()
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(1.0)
        if self._http is not None:
            self._http.cancelled.set()
