"""Health probes of a new version: an HTTP GET (2xx = healthy) and a command (exit 0).

`ProbeRound` runs the configured probes once without blocking its caller: the loop calls
`poll()` at each tick. The HTTP probe runs on a worker thread (bounded by its timeout); the
command runs as a child in its own process group, killed with its children at the timeout.
"""

import contextlib
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from uptend.agent.worker import Job
from uptend.protocol.manifest import HealthSection

_STATUS = re.compile(rb"HTTP/\d\.\d (\d{3})\b")


def http_probe(url: str, timeout_s: float) -> str | None:
    """GET `url` once: None if it answers 2xx, else why not.

    A raw HTTP/1.0 request on a socket rather than urllib3 or http.client: the status line is
    all a probe needs, one deadline bounds connect, TLS and every read (an app that drips its
    answer cannot stretch it), no redirect is followed and nothing is retried; `ssl` is only
    imported for an https URL.
    """
    deadline = time.monotonic() + timeout_s
    try:
        parts = urlsplit(url)
        https = parts.scheme == "https"
        host, port = parts.hostname or "", parts.port or (443 if https else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            conn = _tls(sock, host, deadline) if https else sock
            conn.sendall(
                f"GET {target} HTTP/1.0\r\nHost: {parts.netloc.rpartition('@')[2]}\r\n"
                "User-Agent: uptend-agent\r\nConnection: close\r\n\r\n".encode()
            )
            line = _status_line(conn, deadline)
    except (OSError, ValueError) as e:  # ValueError: a bad port, a URL that is not ASCII
        return f"http probe {url} failed: {str(e) or type(e).__name__}"
    if (status := _STATUS.match(line)) is None:
        return f"http probe {url} answered something that is not HTTP: {line[:80]!r}"
    code = int(status[1])
    return None if 200 <= code < 300 else f"http probe {url} answered {code}"


def _tls(sock: socket.socket, host: str, deadline: float) -> socket.socket:
    import ssl  # ~5 MB: only for an https probe

    sock.settimeout(_remaining(deadline))
    return ssl.create_default_context().wrap_socket(sock, server_hostname=host)


def _status_line(sock: socket.socket, deadline: float) -> bytes:
    """The first line of the answer, read under the one deadline."""
    data = b""
    while b"\n" not in data and len(data) < 4096:
        sock.settimeout(_remaining(deadline))
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("the server closed the connection without an answer")
        data += chunk
    return data.split(b"\n", 1)[0].rstrip(b"\r")


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


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
