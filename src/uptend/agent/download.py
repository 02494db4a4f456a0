"""Resumable, capped artifact downloads, checked against the signed length and hashes.

Why not ngclient's `download_target()`: it spools to a temp file with no Range resume, no
overall deadline and a non-atomic copy (docs/faults.md, "python-tuf 7.x notes"). Here an
artifact goes into a staging file that survives a cut connection or a crash, is never
written beyond the signed length, and is then checked with
`TargetFile.verify_length_and_hashes`. The file is not renamed into place: the caller does
that, after this returns.

Errors are translated here, once (docs/architecture.md, Errors): over-long or substituted
bytes become `VerificationError` (and the staging file is deleted); network trouble, HTTP
errors, timeouts and the deadline become `TransientError` (and the bytes so far are kept).
"""

import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import urllib3
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import TargetFile

from uptend.agent import files, http
from uptend.agent.http import FetchLimits
from uptend.agent.observe import Span, no_span
from uptend.errors import TransientError, VerificationError

__all__ = ["FetchLimits", "download_target", "is_verified_copy", "target_url"]

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


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
    span: Span = no_span,
    ca_file: Path | None = None,
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
        span: times the `download` and the `verify` (`agent/observe.py`).
        ca_file: a CA to trust for an https `url`, besides the system's.

    Raises:
        VerificationError: More than the signed length arrived, or the hashes differ.
        TransientError: Network error, HTTP error, timeout or deadline.
    """
    deadline = time.monotonic() + limits.deadline_s
    with open(partial, "a+b", opener=files.private_opener) as f:
        try:
            with span("download"):
                if _fetch_into(f, info, url, limits, deadline, progress, ca_file):
                    f.flush()
                    os.fsync(f.fileno())
            with span("verify"):
                _verify(f, info)
        except VerificationError:
            # Promise 1 (docs/architecture.md), docs/faults.md A3-A4: unverified bytes never
            # stay in staging.
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
    ca_file: Path | None,
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

    pool = http.new_pool(ca_file)
    try:
        if _get_once(pool, f, info, url, have, limits, deadline, progress):
            return True
        # 416, or a 206 for another range than asked: start over from byte 0, once
        # (docs/faults.md C21); the length cap and the hash check still guard the result.
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
        response = http.get(pool, url, limits, deadline, headers)
    except http.DeadlinePassedError as e:
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
        http.let_go(response, fully_read=fully_read)


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
        # sends too much (docs/faults.md A4) without letting it fill the disk.
        for chunk in http.chunks(response, limits, deadline, max_bytes=length - have + 1):
            if have + len(chunk) > length:
                raise VerificationError(
                    f"{info.path}: server sent more than the signed length of {length} bytes",
                    hint="endless or substituted data; the partial download was deleted",
                )
            f.write(chunk)
            have += len(chunk)
            if progress is not None:
                progress(have, length)
    except http.DeadlinePassedError as e:
        f.flush()
        raise _deadline_error(info, limits) from e
    except urllib3.exceptions.HTTPError as e:
        f.flush()
        raise TransientError(
            f"downloading {info.path} stopped at {have} of {length} bytes: {http.reason(e)}",
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
        f"downloading {info.path} from {url} failed: {http.reason(e)}",
        hint="the repository could not be reached; the next attempt resumes",
    )
