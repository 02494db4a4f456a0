"""The agent's client for the control plane: enroll and check in, over http.client.

The standard library rather than urllib3 or httpx: every megabyte of an idle agent counts on
50,000 hosts. (http.client itself imports `ssl`, ~6 MB, even for an http server: leaving it
out would take a client on `socket`.) One kept-alive connection is reused from check-in to
check-in. Server error bodies map back to the same UptendError
classes the server raised (`protocol.errors`); network trouble and answers that are not
what `agent.wire` expects are TransientErrors: the agent keeps its apps running and retries.
"""

import dataclasses
import http.client
import logging
import re
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from uptend import __version__
from uptend.agent import tls, wire
from uptend.agent.crashpoints import crashpoint
from uptend.agent.wire import CheckIn, Directives
from uptend.errors import AuthError, ConfigError, RateLimitedError, TransientError, UptendError
from uptend.protocol.errors import error_from_body
from uptend.protocol.tokens import AGENT_PREFIX

T = TypeVar("T")
log = logging.getLogger("uptend.agent")
CONNECT_TIMEOUT_S = 10.0
_CREDENTIAL = re.compile(re.escape(AGENT_PREFIX) + r"[A-Za-z0-9_\-]{16,200}")
_RETRY_HINT = "the agent keeps its apps running and retries with backoff"
# What a kept-alive connection the server has closed meanwhile raises on its next request.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


MAX_RETRY_AFTER_S = 3600  # a larger Retry-After (hostile or broken) is capped at this


def _retry_after(value: str | None) -> int | None:
    """Retry-After as delta-seconds, bounded (an HTTP date is ignored: the clock may lie)."""
    if value is None or not value.strip().isdigit() or len(value) > 10:
        return None
    return min(int(value), MAX_RETRY_AFTER_S)


def holding(body: CheckIn, last: Directives | None) -> CheckIn:
    """`body` saying which directives the agent holds, so the server may answer `unchanged`."""
    return dataclasses.replace(
        body,
        generation=last.generation if last else None,
        valid_until=last.valid_until if last else None,
    )


def kept(answer: Directives, last: Directives | None) -> Directives:
    """The directives to follow: `last` if the server says they still hold, else `answer`."""
    if answer.unchanged and last is not None:  # commands and a busy hint ride it too
        if answer.commands or answer.retry_after_s is not None:
            return dataclasses.replace(
                last, commands=answer.commands, retry_after_s=answer.retry_after_s
            )
        return last
    return answer


class ControlClient:
    """`store` keeps a rotated credential durably; it is used only once `store` returned."""

    def __init__(
        self,
        server: str,
        credential: str | None = None,
        timeout_s: float = 30.0,
        store: Callable[[str], None] | None = None,
        *,
        ca_file: Path | None = None,
    ):
        self.server = server.rstrip("/") + "/"
        self.credential = credential
        self.store = store
        self.timeout_s = timeout_s
        self.ca_file = ca_file  # trusted besides the system's CAs (https only)
        url = urlsplit(self.server)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(
                f"invalid server URL {server!r}", hint="use http://HOST:PORT or https://HOST"
            )
        self._https = url.scheme == "https"
        self._host, self._port, self._base = url.hostname, url.port, url.path
        self._conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: object, answer: type[T]) -> T:
        """POST the wire message `body` to `path`; the server's answer as an `answer`."""
        status, data, after = self._exchange(path.lstrip("/"), wire.encode(body))
        if status in (429, 503) and after is not None:  # busy or rate-limited: wait as told
            e = error_from_body(status, data)
            raise RateLimitedError(e.message, hint=e.hint, retry_after_s=after)
        if status >= 400:
            raise error_from_body(status, data)
        try:
            return wire.decode(answer, data)
        except wire.WireError as e:
            raise TransientError(f"the server sent an unexpected answer to {path}: {e}") from None

    def checkin(self, body: CheckIn, last: Directives | None) -> Directives:
        """Check in, saying which directives the agent holds; `last` itself if they still hold.

        The server answers `unchanged` (a few bytes) when neither the generation of `last`
        nor the agent's state moved since it last recorded them, and `last` has not outlived
        its `valid_until` (a maintenance window opening or closing) by the server's clock.
        """
        sent = holding(body, last)
        try:
            answer = self.post("api/v1/checkin", sent, Directives)
        except (AuthError, TransientError):
            raise
        except UptendError as e:  # a refused check-in (413, 422): keep the apps, retry later
            raise TransientError(
                f"the server refused the check-in: {e.message}", hint=e.hint or _RETRY_HINT
            ) from None
        if answer.credential is not None:
            self._rotate(answer.credential)
            answer = dataclasses.replace(answer, credential=None)  # never in directives.json
        return kept(answer, last)

    def _rotate(self, credential: str) -> None:
        """Store the new credential, then use it.

        The server accepts the old one until it sees the new one, so a kill -9 before the
        store means only that the next check-in (with the old one) gets another new one.
        """
        if self.store is None or not _CREDENTIAL.fullmatch(credential):
            log.warning("ignoring a malformed credential from the server; keeping the old one")
            return
        crashpoint("credential:received")
        try:
            self.store(credential)
        except OSError as e:  # the old credential still works: the next check-in gets another
            log.warning("cannot store the new credential (%s); keeping the old one", e)
            return
        crashpoint("credential:stored")
        self.credential = credential
        log.info("stored the new credential the server handed over; using it from now on")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _exchange(self, path: str, body: bytes) -> tuple[int, bytes, int | None]:
        """(status, body, Retry-After in whole seconds if given and sane) of one POST."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"uptend/{__version__}",
        }
        if self.credential:
            headers["Authorization"] = f"Bearer {self.credential}"
        while True:
            reused = self._conn is not None
            try:
                conn = self._connection()
                conn.request("POST", self._base + path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read(wire.MAX_BODY_BYTES + 1)
            except _STALE as e:
                self.close()
                if reused:  # the server closed the idle connection: once more on a new one
                    continue
                raise self._unreachable(e) from None
            except ssl.SSLCertVerificationError as e:
                self.close()
                raise TransientError(
                    f"the TLS certificate of {self.server} is not trusted: {e.verify_message}",
                    hint=tls.UNTRUSTED_HINT,
                ) from None
            except (OSError, http.client.HTTPException) as e:
                self.close()
                raise self._unreachable(e) from None
            if response.will_close or len(data) > wire.MAX_BODY_BYTES:
                self.close()  # a body over the limit is cut, so the connection is unusable
            return response.status, data, _retry_after(response.getheader("Retry-After"))

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._https:
                context = tls.client_context(self.ca_file)
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=CONNECT_TIMEOUT_S, context=context
                )
            else:
                self._conn = http.client.HTTPConnection(
                    self._host, self._port, timeout=CONNECT_TIMEOUT_S
                )
            self._conn.connect()
            if self._conn.sock is not None:
                self._conn.sock.settimeout(self.timeout_s)  # connected: now the read timeout
        return self._conn

    def _unreachable(self, e: Exception) -> TransientError:
        return TransientError(f"cannot reach the server at {self.server}: {e}", hint=_RETRY_HINT)
