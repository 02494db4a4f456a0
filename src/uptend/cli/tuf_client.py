"""`uptend tuf-client`: the tuf-conformance client CLI, on the agent's own fetch path.

Why it exists: the public tuf-conformance suite (theupdateframework/tuf-conformance) drives
any TUF client through this command line (its CLIENT-CLI.md; docs/faults.md, "The
tuf-conformance client contract"). Running the suite against `uptend tuf-client` tests the
code the fleet runs: `TufSession`, `download_target` and `DataDirLock`, not a demo client.

The contract, kept exactly: exit 0 on full success and 1 on any failure; `init` makes no
request and stores the root in `D/.bootstrap-root` (not `*.json`, so it is never mistaken
for cached metadata, docs/faults.md A11); `refresh` and `download` leave ngclient's non-versioned
names (`root.json`, `timestamp.json`, ...) in D; `download` refreshes first, handles the
targets in order with one session, stops at the first failure, skips an artifact already in
O with matching hashes, and writes each artifact atomically under one file name per target
path (the target path URL-quoted, as python-tuf names it).
"""

import contextlib
import glob
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TypeVar
from urllib import parse

import typer

from uptend.agent.download import download_target, is_verified_copy, target_url
from uptend.agent.files import fsync_dir, write_atomically
from uptend.agent.lock import DataDirLock
from uptend.agent.tuf_session import TargetFile, TufSession, check_trusted_root
from uptend.cli import _output
from uptend.errors import ConfigError, UptendError

ANCHOR_NAME = ".bootstrap-root"

_T = TypeVar("_T")

app = typer.Typer(
    add_completion=False,  # the root command owns shell completion (it has none)
    help="A TUF client for the tuf-conformance suite, built on the agent's fetch path.",
    no_args_is_help=True,
    epilog="Example: uptend tuf-client --metadata-dir /tmp/md init root.json",
)


@dataclass(frozen=True, slots=True)
class _Options:
    metadata_dir: Path | None
    metadata_url: str | None
    target_names: tuple[str, ...]
    target_base_url: str | None
    target_dir: Path | None


@app.callback()
def _options(
    ctx: typer.Context,
    metadata_dir: Annotated[
        Path | None, typer.Option("--metadata-dir", help="Trusted metadata is kept here.")
    ] = None,
    metadata_url: Annotated[
        str | None, typer.Option("--metadata-url", help="Base URL of the repository metadata.")
    ] = None,
    target_name: Annotated[
        list[str] | None,
        typer.Option("--target-name", help="Target path to download; repeat for more."),
    ] = None,
    target_base_url: Annotated[
        str | None, typer.Option("--target-base-url", help="Base URL of the repository targets.")
    ] = None,
    target_dir: Annotated[
        Path | None, typer.Option("--target-dir", help="Verified artifacts are written here.")
    ] = None,
) -> None:
    """Options shared by every command; they go before the command name."""
    ctx.obj = _Options(
        metadata_dir=metadata_dir,
        metadata_url=metadata_url,
        target_names=tuple(target_name or ()),
        target_base_url=target_base_url,
        target_dir=target_dir,
    )


@app.command(epilog="Example: uptend tuf-client --metadata-dir /tmp/md init ./root.json")
def init(
    ctx: typer.Context,
    trusted_root: Annotated[Path, typer.Argument(help="File holding the initial root.json.")],
) -> None:
    """Trust TRUSTED_ROOT as the start of the root chain; makes no request."""
    opts: _Options = ctx.obj
    with _exit_code():
        md = _require(opts.metadata_dir, "--metadata-dir")
        data = _read(trusted_root, "trusted root")
        version = check_trusted_root(data)
        md.mkdir(parents=True, exist_ok=True)
        with DataDirLock(md):
            write_atomically(md / ANCHOR_NAME, data)
        _output.console.print(_output.literal(f"trusting root v{version} in {md}"))


@app.command(
    epilog="Example: uptend tuf-client --metadata-dir /tmp/md "
    "--metadata-url http://127.0.0.1:8080/metadata refresh"
)
def refresh(ctx: typer.Context) -> None:
    """Update and verify the top-level metadata (root, timestamp, snapshot, targets)."""
    opts: _Options = ctx.obj
    with _exit_code():
        md = _require(opts.metadata_dir, "--metadata-dir")
        url = _require(opts.metadata_url, "--metadata-url")
        anchor = _read_anchor(md)
        with DataDirLock(md), TufSession(md, url, anchor) as session:
            _refresh(session, md, anchor)
        _output.console.print(_output.literal(f"metadata in {md} is up to date"))


@app.command(
    epilog="Example: uptend tuf-client --metadata-dir /tmp/md "
    "--metadata-url http://127.0.0.1:8080/metadata --target-name demo/1.0/demo-1.0.tar.gz "
    "--target-base-url http://127.0.0.1:8080/targets --target-dir /tmp/out download"
)
def download(ctx: typer.Context) -> None:
    """Refresh, then download and verify each --target-name in order; stop at the first failure."""
    opts: _Options = ctx.obj
    with _exit_code():
        md = _require(opts.metadata_dir, "--metadata-dir")
        url = _require(opts.metadata_url, "--metadata-url")
        base = _require(opts.target_base_url, "--target-base-url")
        out = _require(opts.target_dir, "--target-dir")
        if not opts.target_names:
            raise ConfigError("no --target-name given", hint="name at least one target path")
        anchor = _read_anchor(md)
        out.mkdir(parents=True, exist_ok=True)
        with DataDirLock(md), TufSession(md, url, anchor) as session:
            _refresh(session, md, anchor)
            for name in opts.target_names:
                info = session.target(name)
                dest = out / parse.quote(info.path, safe="")
                if is_verified_copy(dest, info):
                    _output.console.print(_output.literal(f"{name}: already in {dest}"))
                    continue
                url_of_target = target_url(base, info, hash_prefix=session.consistent_snapshot)
                _fetch_atomically(info, url_of_target, dest)
                _output.console.print(_output.literal(f"{name}: downloaded to {dest}"))


def _refresh(session: TufSession, metadata_dir: Path, anchor: bytes) -> None:
    """Refresh, then store the newest verified root as the next anchor, even on failure.

    Roots verified before a later step failed stay verified (docs/faults.md A10); keeping them
    means a rotation is honoured next time even if `metadata_dir/root_history` is lost.
    """
    try:
        session.refresh()
    finally:
        newest = session.trusted_root()
        if newest != anchor:
            write_atomically(metadata_dir / ANCHOR_NAME, newest)


def _fetch_atomically(info: TargetFile, url: str, dest: Path) -> None:
    """Stage next to `dest`, verify, then one rename: O never holds unverified bytes."""
    digest = info.hashes.get("sha256") or next(iter(info.hashes.values()))
    # Hidden, and keyed by content hash, so a resume never splices two versions together.
    partial = dest.with_name(f".{dest.name}.{digest[:16]}.partial")
    for stale in dest.parent.glob(f".{glob.escape(dest.name)}.*.partial"):
        if stale != partial:
            stale.unlink(missing_ok=True)
    download_target(info, url, partial)
    partial.replace(dest)
    fsync_dir(dest.parent)


def _read_anchor(metadata_dir: Path) -> bytes:
    path = metadata_dir / ANCHOR_NAME
    if not path.is_file():
        raise ConfigError(
            f"{metadata_dir} holds no trusted root",
            hint=f"run `uptend tuf-client --metadata-dir {metadata_dir} init ROOT` first",
        )
    return _read(path, "trusted root")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read the {what} {path}: {e.strerror}") from e


def _require(value: _T | None, option: str) -> _T:
    if value is None:
        raise ConfigError(f"{option} is required for this command")
    return value


@contextlib.contextmanager
def _exit_code() -> Iterator[None]:
    """The contract's exit codes: any expected failure prints one line and exits 1."""
    try:
        yield
    except UptendError as e:
        _output.fail(e)
        raise typer.Exit(1) from e
    except OSError as e:
        _output.fail(UptendError(str(e)))
        raise typer.Exit(1) from e
