"""HTTP plumbing for the agent's downloads: one urllib3 pool, bounded GETs, error reasons.

Shared by the TUF session (metadata) and the artifact download. Every GET carries the
connect and between-bytes timeouts and a whole-download deadline (`FetchLimits`), and
bodies are read with `chunks`, which never asks the socket for more than a cap. Each
caller turns `DeadlinePassedError` and urllib3's errors into its own error family.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import urllib3

import uptend
from uptend.agent import tls

__all__ = [
    "USER_AGENT",
    "DeadlinePassedError",
    "FetchLimits",
    "chunks",
    "get",
    "let_go",
    "new_pool",
    "reason",
]

USER_AGENT = f"uptend/{uptend.__version__}"
# identity: the signed length and hashes are of the bytes as stored, not as re-encoded.
_HEADERS = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """Network limits for one download; every number carries its unit."""

    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0  # max gap between bytes
    deadline_s: float = 600.0  # whole-download deadline (slow drip, docs/faults.md C22)
    chunk_bytes: int = 1 << 20


class DeadlinePassedError(Exception):
    """The whole-download deadline passed; mapped by each caller to its own error family."""


def new_pool(ca_file: Path | None = None) -> urllib3.PoolManager:
    """A urllib3 pool that follows redirects but never retries on its own.

    Over https it trusts the system's CAs and `ca_file` (the server's own CA), if given.

    One retry policy, in one place: a failed fetch is a fault for `agent/faults.py`, and
    the decision layer retries it after the backoff of `policy/backoff.py`
    (`decide.fetch_retry_at`, or the next check cycle for metadata). A second layer here
    would multiply the attempts and hide a cut connection from the resume logic.
    Redirects are followed (CDNs use them), at most five hops.
    """
    retries = urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=5)
    if ca_file is None:
        return urllib3.PoolManager(retries=retries)
    return urllib3.PoolManager(retries=retries, ssl_context=tls.client_context(ca_file))


def get(
    pool: urllib3.PoolManager,
    url: str,
    limits: FetchLimits,
    deadline: float,
    headers: dict[str, str] | None = None,
) -> urllib3.BaseHTTPResponse:
    """Start a GET of `url` (body not read yet) within `limits` and the monotonic `deadline`.

    Raises:
        DeadlinePassedError: The deadline passed before the request could start.
        urllib3.exceptions.HTTPError: The request failed.
    """
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise DeadlinePassedError
    timeout = urllib3.Timeout(
        connect=min(limits.connect_timeout_s, remaining),
        read=min(limits.read_timeout_s, remaining),
    )
    # urllib3 replaces (does not merge) default headers when some are given: merge here.
    return pool.request(
        "GET",
        url,
        headers={**_HEADERS, **(headers or {})},
        preload_content=False,
        redirect=True,
        timeout=timeout,
    )


def let_go(response: urllib3.BaseHTTPResponse, *, fully_read: bool) -> None:
    """Return a fully read connection to the pool; close any other (unread bytes poison it)."""
    if fully_read:
        response.release_conn()
    else:
        response.close()


def chunks(
    response: urllib3.BaseHTTPResponse,
    limits: FetchLimits,
    deadline: float,
    max_bytes: int | None = None,
) -> Iterator[bytes]:
    """Yield the body as it arrives; never ask the socket for more than `max_bytes` in total.

    `read1` returns whatever is available (a plain `read(n)` waits for n bytes, which lets a
    slow drip dodge the deadline check between chunks). The socket read timeout bounds the
    gap between bytes, so the deadline can be overshot by at most `read_timeout_s`.
    """
    received = 0
    while True:
        if time.monotonic() > deadline:
            raise DeadlinePassedError
        want = limits.chunk_bytes
        if max_bytes is not None:
            want = min(want, max_bytes - received)
            if want <= 0:
                return
        chunk = response.read1(want)
        if not chunk:
            return
        received += len(chunk)
        yield chunk


def reason(e: urllib3.exceptions.HTTPError) -> str:
    """A short, stable reason for a failed request: for messages and for classifying."""
    cause = e.reason if isinstance(e, urllib3.exceptions.MaxRetryError) else e
    # NewConnectionError subclasses ConnectTimeoutError in urllib3 2.x: test it first.
    if isinstance(cause, urllib3.exceptions.NewConnectionError):
        return "could not connect"
    if isinstance(cause, urllib3.exceptions.TimeoutError):
        return "timed out"
    if isinstance(cause, urllib3.exceptions.ProtocolError):
        return "connection broken"
    return str(cause)
