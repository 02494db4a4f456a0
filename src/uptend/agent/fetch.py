"""The agent's TUF client: verified metadata through python-tuf, artifacts through our own download.

Why this module exists: python-tuf's ngclient decides trust (DESIGN promise 1), but its
`download_target()` spools to a temp file with no Range resume, no overall deadline and a
non-atomic copy (TEST-CATALOGUE "python-tuf 7.x notes"). So the work is split:

* `TufSession` runs one ngclient `Updater` per check cycle (refresh runs once per instance,
  and expiry is judged against the time fixed at construction). Metadata goes through
  `_LimitedFetcher`, a urllib3 fetcher that honours `FetchLimits`.
* `download_target` fetches an artifact into a resumable staging file, never beyond the
  signed length, then checks it with `TargetFile.verify_length_and_hashes`. It does not
  rename the file into place: the caller does that, after this returns.

Trust anchor (TEST-CATALOGUE A11). The Updater always gets `bootstrap=` with the root the
caller holds (received at enrollment, later the newest verified root). ngclient 7.x never
reads `metadata_dir/root.json` when `bootstrap` is given; it rewrites that name as a symlink
into `root_history/`, and newer roots found in `root_history/` are verified against the
chain before use. After a refresh, `TufSession.trusted_root()` returns the newest root the
chain verified, so the caller can atomically replace its anchor (kept in a file *not* named
`*.json`): root rotations are then honoured even if `metadata_dir` is wiped or rewritten.

Errors are translated here, once (STYLE 2.4): tuf `RepositoryError` (signature, version,
expiry, hash) and over-long downloads become `VerificationError`; network trouble
(`DownloadError`, urllib3 errors, timeouts, the deadline) becomes `TransientError`.
This module does not choose which target to install, parse `custom`, or unpack anything.
"""

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import urllib3
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, Root, TargetFile
from tuf.ngclient.config import UpdaterConfig
from tuf.ngclient.fetcher import FetcherInterface
from tuf.ngclient.updater import Updater

import uptend
from uptend.errors import TransientError, VerificationError

__all__ = [
    "FetchLimits",
    "TargetFile",
    "TufSession",
    "check_trusted_root",
    "download_target",
    "is_verified_copy",
    "target_url",
]

logger = logging.getLogger(__name__)

_USER_AGENT = f"uptend/{uptend.__version__}"
# identity: the signed length and hashes are of the bytes as stored, not as re-encoded.
_HEADERS = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """Network limits for one download; every number carries its unit."""

    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0  # max gap between bytes
    deadline_s: float = 600.0  # whole-download deadline (slow drip, catalogue C22)
    chunk_bytes: int = 1 << 20


class _DeadlinePassedError(Exception):
    """The whole-download deadline passed; mapped by each caller to its own error family."""


def _pool() -> urllib3.PoolManager:
    # No read retries: a retried GET after a partial body would hide a cut connection
    # from the resume logic. Redirects are followed (CDNs use them); each hop is capped.
    retries = urllib3.Retry(total=3, connect=2, read=0, redirect=5, status=0)
    return urllib3.PoolManager(retries=retries)


def _get(
    pool: urllib3.PoolManager,
    url: str,
    limits: FetchLimits,
    deadline: float,
    headers: dict[str, str] | None = None,
) -> urllib3.BaseHTTPResponse:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _DeadlinePassedError
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


def _let_go(response: urllib3.BaseHTTPResponse, *, fully_read: bool) -> None:
    """Return a fully read connection to the pool; close any other (unread bytes poison it)."""
    if fully_read:
        response.release_conn()
    else:
        response.close()


def _chunks(
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
            raise _DeadlinePassedError
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


class _LimitedFetcher(FetcherInterface):
    """ngclient's fetcher seam, on urllib3 with our connect/gap timeouts and deadline.

    ngclient caps each metadata file's length itself (`UpdaterConfig` / snapshot meta);
    this class adds the time limits and keeps every failure a tuf `DownloadError`.
    """

    def __init__(self, pool: urllib3.PoolManager, limits: FetchLimits) -> None:
        self._pool = pool
        self._limits = limits

    def _fetch(self, url: str) -> Iterator[bytes]:
        deadline = time.monotonic() + self._limits.deadline_s
        try:
            response = _get(self._pool, url, self._limits, deadline)
        except _DeadlinePassedError as e:
            raise tuf_errors.SlowRetrievalError(f"deadline passed fetching {url}") from e
        except urllib3.exceptions.HTTPError as e:
            raise _download_error(url, e) from e
        if response.status >= 400:
            _let_go(response, fully_read=False)
            raise tuf_errors.DownloadHTTPError(f"HTTP {response.status} for {url}", response.status)
        return self._body(url, response, deadline)

    def _body(
        self, url: str, response: urllib3.BaseHTTPResponse, deadline: float
    ) -> Iterator[bytes]:
        # ngclient iterates this outside `fetch()`'s own error translation, so every
        # error raised while streaming is turned into a DownloadError here.
        fully_read = False
        try:
            yield from _chunks(response, self._limits, deadline)
            fully_read = True
        except _DeadlinePassedError as e:
            raise tuf_errors.SlowRetrievalError(f"deadline passed fetching {url}") from e
        except urllib3.exceptions.HTTPError as e:
            raise _download_error(url, e) from e
        finally:
            _let_go(response, fully_read=fully_read)


def _download_error(url: str, e: urllib3.exceptions.HTTPError) -> tuf_errors.DownloadError:
    reason = _reason(e)
    if reason == "timed out":
        return tuf_errors.SlowRetrievalError(f"timed out fetching {url}")
    return tuf_errors.DownloadError(f"failed to fetch {url}: {reason}")


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """Turn tuf and urllib3 errors into uptend's, keeping the cause (`raise ... from e`)."""
    try:
        yield
    except tuf_errors.ExpiredMetadataError as e:
        # DESIGN promise 2: expiry only holds back installs; the message says so plainly.
        raise VerificationError(
            f"{what}: metadata expired: {e}",
            hint="the repository must re-sign its metadata; installs are held back until then",
        ) from e
    except tuf_errors.RepositoryError as e:
        # DESIGN promise 1: unsigned, rolled back, mixed-and-matched or malformed metadata.
        raise VerificationError(
            f"{what}: {type(e).__name__}: {e}",
            hint="the repository served metadata that does not verify; nothing was installed",
        ) from e
    except tuf_errors.DownloadLengthMismatchError as e:
        # TEST-CATALOGUE A5: more bytes than the signed or configured cap (endless data).
        raise VerificationError(
            f"{what}: metadata longer than allowed: {e}",
            hint="the repository or something in between sent too much data; nothing was used",
        ) from e
    except tuf_errors.DownloadError as e:
        raise TransientError(
            f"{what}: {e}", hint="the repository could not be reached; retrying later"
        ) from e
    except urllib3.exceptions.HTTPError as e:
        raise TransientError(
            f"{what}: {e}", hint="the repository could not be reached; retrying later"
        ) from e


def check_trusted_root(data: bytes) -> int:
    """Check that `data` is root metadata signed by a threshold of its own keys.

    This is the check ngclient applies to `bootstrap`; doing it before storing an anchor
    turns a bad root into an error now rather than at the next refresh. It does not check
    expiry: an expired root is still a valid start for a rotation chain (catalogue A10).

    Returns:
        The root's version.

    Raises:
        VerificationError: `data` is not valid, self-signed root metadata.
    """
    with _translated("trusted root is not valid"):
        md = Metadata[Root].from_bytes(data)
        if md.signed.type != Root.type:
            raise tuf_errors.RepositoryError(f"expected root, got {md.signed.type}")
        md.verify_delegate(Root.type, md)
        version: int = md.signed.version
    return version


class TufSession:
    """One TUF refresh cycle (python-tuf: one Updater per cycle).

    Use it as a context manager (it owns a urllib3 connection pool), call `refresh()`,
    then `target()` for each name, then persist `trusted_root()` as the next anchor.
    The caller holds the data-directory lock (ngclient is single-instance per directory).

    Args:
        metadata_dir: ngclient's writable cache (`root.json`, `timestamp.json`, ...).
        metadata_url: base URL of the repository metadata.
        trusted_root: the anchor: root bytes received at enrollment, or the newest root a
            previous cycle verified. Never read from `metadata_dir`.
        limits: timeouts and deadline for each metadata download.
    """

    def __init__(
        self,
        metadata_dir: Path,
        metadata_url: str,
        trusted_root: bytes,
        *,
        limits: FetchLimits = FetchLimits(),
    ) -> None:
        self._dir = metadata_dir
        self._url = metadata_url
        self._anchor = trusted_root
        self._limits = limits
        self._pool = _pool()
        self._updater: Updater | None = None
        self._refreshed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._pool.clear()

    def refresh(self) -> None:
        """Load and verify root -> timestamp -> snapshot -> targets with a fresh Updater.

        Raises:
            VerificationError: Metadata failed to verify, expired, or was too long.
            TransientError: The repository could not be reached in time.
            OSError: The metadata directory could not be written.
        """
        self._refreshed = False
        self._updater = None
        with _translated("refreshing TUF metadata failed"):
            # TEST-CATALOGUE A11: bootstrap is always our anchor; ngclient then ignores
            # whatever sits in metadata_dir/root.json.
            self._updater = Updater(
                str(self._dir),
                self._url,
                fetcher=_LimitedFetcher(self._pool, self._limits),
                config=UpdaterConfig(app_user_agent=_USER_AGENT),
                bootstrap=self._anchor,
            )
            self._updater.refresh()
        self._refreshed = True

    def target(self, name: str) -> TargetFile:
        """Return the signed length, hashes and `custom` of target `name`.

        Delegated targets metadata is fetched and verified on demand.

        Raises:
            VerificationError: `name` is not signed, or delegated metadata failed to verify.
            TransientError: The repository could not be reached in time.
        """
        updater = self._require_refreshed()
        with _translated(f"looking up {name} failed"):
            info = updater.get_targetinfo(name)
        if info is None:
            raise VerificationError(
                f"{name} is not a signed target",
                hint="check the target name; only targets in signed metadata are downloaded",
            )
        return info

    @property
    def consistent_snapshot(self) -> bool:
        """Whether target URLs carry the hash prefix (ngclient decides it from the root)."""
        root = self._trusted_root_signed()
        return True if root is None else bool(root.consistent_snapshot)

    def trusted_root(self) -> bytes:
        """Return the newest root the chain verified, as bytes to store as the next anchor.

        Valid after `refresh()`, even a failed one: roots verified before the failure stay
        verified (catalogue A10). Before any refresh, or if the cached copy of that root no
        longer matches what was verified, the current anchor is returned unchanged.
        """
        root = self._trusted_root_signed()
        if root is None:
            return self._anchor
        try:
            anchor_version = Metadata[Root].from_bytes(self._anchor).signed.version
        except Exception:  # noqa: BLE001 - the anchor was already accepted by ngclient
            anchor_version = 0
        if root.version == anchor_version:
            return self._anchor
        # ngclient persisted every root it verified under root_history/<N>.root.json. The
        # file is re-read, so it must equal what was verified and verify by itself, or we
        # keep the old anchor: a swapped file can never become the trust anchor.
        path = self._dir / "root_history" / f"{root.version}.root.json"
        try:
            data = path.read_bytes()
            md = Metadata[Root].from_bytes(data)
            if md.signed != root:
                raise tuf_errors.RepositoryError("content differs from the verified root")
            md.verify_delegate(Root.type, md)
        except Exception as e:  # noqa: BLE001 - any failure keeps the old anchor
            logger.warning("not advancing the TUF anchor to root v%d: %s", root.version, e)
            return self._anchor
        return data

    def _require_refreshed(self) -> Updater:
        if self._updater is None or not self._refreshed:
            raise RuntimeError("TufSession.refresh() must succeed before target()")
        return self._updater

    def _trusted_root_signed(self) -> Root | None:
        if self._updater is None:
            return None
        # ngclient 7.x has no public accessor for the trusted root; tuf is pinned <8 and
        # tests/agent/test_fetch.py covers this line (root rotation, attacker root.json).
        root: Root = self._updater._trusted_set.root
        return root


def target_url(targets_base_url: str, info: TargetFile, *, hash_prefix: bool = True) -> str:
    """Return where the repository serves `info`, as ngclient computes it.

    With consistent snapshots the file name is prefixed with a hash of its content
    (`<dir>/<sha256>.<name>`), so a CDN can cache it forever and a half-published release
    never mixes old and new bytes. sha256 is used when present, else the first hash listed.
    """
    base = targets_base_url if targets_base_url.endswith("/") else f"{targets_base_url}/"
    if not hash_prefix:
        return f"{base}{info.path}"
    digest = info.hashes.get("sha256") or next(iter(info.hashes.values()))
    dirname, sep, basename = info.path.rpartition("/")
    return f"{base}{dirname}{sep}{digest}.{basename}"


def download_target(
    info: TargetFile,
    url: str,
    partial: Path,
    *,
    limits: FetchLimits = FetchLimits(),
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Download `info` from `url` into `partial`, resuming what is there, then verify it.

    On return `partial` holds exactly the signed bytes, fsynced; the caller renames it into
    place. A transient failure leaves the bytes received so far for the next attempt. A
    verification failure deletes `partial`.

    Args:
        info: signed length and hashes, from `TufSession.target()`.
        url: where to fetch it, usually `target_url(base, info)`.
        partial: staging file; created if absent, resumed with `Range` if not.
        limits: connect/gap timeouts and the whole-download deadline.
        progress: called with (bytes on disk, signed length) after each chunk.

    Raises:
        VerificationError: More than the signed length arrived, or the hashes differ.
        TransientError: Network error, HTTP error, timeout or deadline.
    """
    deadline = time.monotonic() + limits.deadline_s
    with partial.open("a+b") as f:
        try:
            if _fetch_into(f, info, url, limits, deadline, progress):
                f.flush()
                os.fsync(f.fileno())
            _verify(f, info)
        except VerificationError:
            # DESIGN promise 1 / catalogue A3-A4: unverified bytes never stay in staging.
            f.close()
            partial.unlink(missing_ok=True)
            raise


def is_verified_copy(path: Path, info: TargetFile) -> bool:
    """Whether `path` already holds exactly the signed bytes of `info` (no download needed)."""
    try:
        with path.open("rb") as f:
            info.verify_length_and_hashes(f)
    except (OSError, tuf_errors.LengthOrHashMismatchError):
        return False
    return True


def _verify(f: IO[bytes], info: TargetFile) -> None:
    try:
        info.verify_length_and_hashes(f)
    except tuf_errors.LengthOrHashMismatchError as e:
        raise VerificationError(
            f"hash mismatch for {info.path}: {e}",
            hint="the downloaded bytes are not the signed release; they were deleted",
        ) from e


def _fetch_into(
    f: IO[bytes],
    info: TargetFile,
    url: str,
    limits: FetchLimits,
    deadline: float,
    progress: Callable[[int, int], None] | None,
) -> bool:
    """Append the missing bytes of `info` to `f`; return False if nothing had to be fetched."""
    length: int = info.length
    have = f.seek(0, os.SEEK_END)
    if have > length:
        f.truncate(0)
        have = 0
    if have == length:
        # A complete staging file from an interrupted run: check it before refetching.
        try:
            info.verify_length_and_hashes(f)
        except tuf_errors.LengthOrHashMismatchError:
            f.truncate(0)
            have = 0
        else:
            return False

    pool = _pool()
    try:
        if _get_once(pool, f, info, url, have, limits, deadline, progress):
            return True
        # 416, or a 206 for another range than asked: start over from byte 0, once
        # (catalogue C21); the length cap and the hash check still guard the result.
        f.truncate(0)
        if _get_once(pool, f, info, url, 0, limits, deadline, progress):
            return True
        raise TransientError(
            f"downloading {info.path} failed: {url} answered with an unusable range",
            hint="the server mishandles Range requests; retrying later",
        )
    finally:
        pool.clear()


def _get_once(
    pool: urllib3.PoolManager,
    f: IO[bytes],
    info: TargetFile,
    url: str,
    have: int,
    limits: FetchLimits,
    deadline: float,
    progress: Callable[[int, int], None] | None,
) -> bool:
    """One GET from byte `have`; False if the server wants a fresh start instead."""
    headers = {"Range": f"bytes={have}-"} if have else None
    try:
        response = _get(pool, url, limits, deadline, headers)
    except _DeadlinePassedError as e:
        raise _deadline_error(info, limits) from e
    except urllib3.exceptions.HTTPError as e:
        raise _transient(info, url, e) from e
    fully_read = False
    try:
        start = _body_start(response, url, have)
        if start is None:
            return False
        if start == 0 and have:
            f.truncate(0)  # the server ignored Range and sent the whole file
        _check_declared_length(response, info, start)
        _stream(response, f, info, start, limits, deadline, progress)
        fully_read = True
        return True
    finally:
        _let_go(response, fully_read=fully_read)


def _body_start(response: urllib3.BaseHTTPResponse, url: str, asked_from: int) -> int | None:
    """Where the response body starts in the file, or None if the response is unusable."""
    if response.status == 200:
        return 0
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if match is not None and int(match.group(1)) == asked_from:
            return asked_from
        return None
    if response.status == 416 and asked_from:
        return None
    raise TransientError(
        f"HTTP {response.status} for {url}",
        hint="the repository did not serve the artifact; retrying later",
    )


def _check_declared_length(
    response: urllib3.BaseHTTPResponse, info: TargetFile, start: int
) -> None:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and start + int(declared) > info.length:
        raise VerificationError(
            f"{info.path}: server announced {start + int(declared)} bytes, "
            f"signed length is {info.length}",
            hint="the server is not serving the signed release; nothing was kept",
        )


def _stream(
    response: urllib3.BaseHTTPResponse,
    f: IO[bytes],
    info: TargetFile,
    have: int,
    limits: FetchLimits,
    deadline: float,
    progress: Callable[[int, int], None] | None,
) -> None:
    length: int = info.length
    try:
        # Ask for at most one byte past the signed length: that byte proves the server
        # sends too much (catalogue A4) without letting it fill the disk.
        for chunk in _chunks(response, limits, deadline, max_bytes=length - have + 1):
            if have + len(chunk) > length:
                raise VerificationError(
                    f"{info.path}: server sent more than the signed length of {length} bytes",
                    hint="endless or substituted data; the partial download was deleted",
                )
            f.write(chunk)
            have += len(chunk)
            if progress is not None:
                progress(have, length)
    except _DeadlinePassedError as e:
        f.flush()
        raise _deadline_error(info, limits) from e
    except urllib3.exceptions.HTTPError as e:
        f.flush()
        raise TransientError(
            f"downloading {info.path} stopped at {have} of {length} bytes: {_reason(e)}",
            hint="the next attempt resumes from there",
        ) from e
    if have < length:
        f.flush()
        raise TransientError(
            f"downloading {info.path} stopped at {have} of {length} bytes",
            hint="the connection closed early; the next attempt resumes from there",
        )


def _deadline_error(info: TargetFile, limits: FetchLimits) -> TransientError:
    return TransientError(
        f"downloading {info.path} took longer than {limits.deadline_s:g} s",
        hint="the server is too slow; the next attempt resumes where this one stopped",
    )


def _transient(info: TargetFile, url: str, e: urllib3.exceptions.HTTPError) -> TransientError:
    return TransientError(
        f"downloading {info.path} from {url} failed: {_reason(e)}",
        hint="the repository could not be reached; the next attempt resumes",
    )


def _reason(e: urllib3.exceptions.HTTPError) -> str:
    reason = e.reason if isinstance(e, urllib3.exceptions.MaxRetryError) else e
    # NewConnectionError subclasses ConnectTimeoutError in urllib3 2.x: test it first.
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        return "could not connect"
    if isinstance(reason, urllib3.exceptions.TimeoutError):
        return "timed out"
    if isinstance(reason, urllib3.exceptions.ProtocolError):
        return "connection broken"
    return str(reason)
