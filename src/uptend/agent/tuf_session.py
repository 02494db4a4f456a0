"""The agent's TUF session: verified metadata through python-tuf's ngclient.

Why this module exists: ngclient decides trust (docs/architecture.md, promise 1); this
module gives it a fetcher with our limits and turns its errors into uptend's. Artifacts do
not go through ngclient's `download_target()`, which spools to a temp file with no Range
resume, no overall deadline and a non-atomic copy: see `uptend.agent.download`.

* `TufSession` runs one ngclient `Updater` per check cycle (refresh runs once per instance,
  and expiry is judged against the time fixed at construction). Metadata goes through
  `_LimitedFetcher`, a urllib3 fetcher that honours `FetchLimits`.

Trust anchor (docs/faults.md A11). The Updater always gets `bootstrap=` with the root the
caller holds (received at enrollment, later the newest verified root). ngclient 7.x never
reads `metadata_dir/root.json` when `bootstrap` is given; it rewrites that name as a symlink
into `root_history/`, and newer roots found in `root_history/` are verified against the
chain before use. After a refresh, `TufSession.trusted_root()` returns the newest root the
chain verified, so the caller can atomically replace its anchor (kept in a file *not* named
`*.json`): root rotations are then honoured even if `metadata_dir` is wiped or rewritten.

Errors are translated here, once (docs/architecture.md, Errors): tuf `RepositoryError`
(signature, version, expiry, hash) and over-long metadata become `VerificationError`; network
trouble (`DownloadError`, urllib3 errors, timeouts, the deadline) becomes `TransientError`.
This module does not choose which target to install, parse `custom`, or unpack anything.
"""

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

import urllib3
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, Root, TargetFile
from tuf.ngclient.config import UpdaterConfig
from tuf.ngclient.fetcher import FetcherInterface
from tuf.ngclient.updater import Updater

from uptend.agent import http
from uptend.agent.http import FetchLimits
from uptend.errors import TransientError, VerificationError

__all__ = ["FetchLimits", "TargetFile", "TufSession", "check_trusted_root"]

logger = logging.getLogger(__name__)


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
            response = http.get(self._pool, url, self._limits, deadline)
        except http.DeadlinePassedError as e:
            raise tuf_errors.SlowRetrievalError(f"deadline passed fetching {url}") from e
        except urllib3.exceptions.HTTPError as e:
            raise _download_error(url, e) from e
        if response.status >= 400:
            http.let_go(response, fully_read=False)
            raise tuf_errors.DownloadHTTPError(f"HTTP {response.status} for {url}", response.status)
        return self._body(url, response, deadline)

    def _body(
        self, url: str, response: urllib3.BaseHTTPResponse, deadline: float
    ) -> Iterator[bytes]:
        # ngclient iterates this outside `fetch()`'s own error translation, so every
        # error raised while streaming is turned into a DownloadError here.
        fully_read = False
        try:
            yield from http.chunks(response, self._limits, deadline)
            fully_read = True
        except http.DeadlinePassedError as e:
            raise tuf_errors.SlowRetrievalError(f"deadline passed fetching {url}") from e
        except urllib3.exceptions.HTTPError as e:
            raise _download_error(url, e) from e
        finally:
            http.let_go(response, fully_read=fully_read)


def _download_error(url: str, e: urllib3.exceptions.HTTPError) -> tuf_errors.DownloadError:
    reason = http.reason(e)
    if reason == "timed out":
        return tuf_errors.SlowRetrievalError(f"timed out fetching {url}")
    return tuf_errors.DownloadError(f"failed to fetch {url}: {reason}")


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """Turn tuf and urllib3 errors into uptend's, keeping the cause (`raise ... from e`)."""
    try:
        yield
    except tuf_errors.ExpiredMetadataError as e:
        # docs/architecture.md promise 2: expiry only holds back installs; said plainly.
        raise VerificationError(
            f"{what}: metadata expired: {e}",
            hint="the repository must re-sign its metadata; installs are held back until then",
        ) from e
    except tuf_errors.RepositoryError as e:
        # docs/architecture.md promise 1: unsigned, rolled back, mixed-and-matched or
        # malformed metadata.
        raise VerificationError(
            f"{what}: {type(e).__name__}: {e}",
            hint="the repository served metadata that does not verify; nothing was installed",
        ) from e
    except tuf_errors.DownloadLengthMismatchError as e:
        # docs/faults.md A5: more bytes than the signed or configured cap (endless data).
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
    expiry: an expired root is still a valid start for a rotation chain (docs/faults.md A10).

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
        ca_file: a CA to trust for an https repository, besides the system's.
    """

    def __init__(
        self,
        metadata_dir: Path,
        metadata_url: str,
        trusted_root: bytes,
        *,
        limits: FetchLimits = FetchLimits(),
        ca_file: Path | None = None,
    ) -> None:
        self._dir = metadata_dir
        self._url = metadata_url
        self._anchor = trusted_root
        self._limits = limits
        self._pool = http.new_pool(ca_file)
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
        # ngclient (tuf >= 6) keeps each trusted root in root_history/, made with the umask's
        # mode: made here first, private like the rest of the data dir.
        (self._dir / "root_history").mkdir(mode=0o700, parents=True, exist_ok=True)
        with _translated("refreshing TUF metadata failed"):
            # docs/faults.md A11: bootstrap is always our anchor; ngclient then ignores
            # whatever sits in metadata_dir/root.json.
            self._updater = Updater(
                str(self._dir),
                self._url,
                fetcher=_LimitedFetcher(self._pool, self._limits),
                config=UpdaterConfig(app_user_agent=http.USER_AGENT),
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
        verified (docs/faults.md A10). Before any refresh, or if the cached copy of that root no
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
        # tests/agent/test_tuf_session.py covers this line (root rotation, attacker root.json).
        root: Root = self._updater._trusted_set.root
        return root
