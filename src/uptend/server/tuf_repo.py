"""The server's signed release repository: TUF metadata and targets as plain files.

Promise 1 of docs/architecture.md (nothing unsigned ever runs) rests here: agents install only
what the targets metadata written by this module vouches for. Everything is a static file any
HTTP server or CDN can serve: `metadata/` (N.root.json, N.targets.json, N.snapshot.json,
timestamp.json: consistent snapshots) and `targets/<dir>/<sha256>.<file>` (the hash-prefixed
names ngclient downloads).
Private keys sit in `keys/<role>.pem` (0600, dir 0700): the embedded default keeps all online.

Invariants:
- `timestamp.json` is the commit point. The published state is what it names (timestamp ->
  snapshot -> targets), not the highest N on disk: a publish killed half way leaves the previous
  state published, and the next publish overwrites its unreferenced N.*.json. Files go out in
  the order targets, artifact, snapshot, timestamp.
- Every file is written atomically and durably (temp file, fsync, rename, fsync of the dir: the
  step python-tuf's `_persist_metadata` skips); `create` builds the repository in a sibling temp
  dir and renames it into place.
- Mutations hold an exclusive `flock` on `.lock` and re-read the published state under it, so
  several server processes can share the directory.

Not done here: root rotation, delegations, an offline targets key, pruning old versions.
`tuf.repository.Repository` is not used: its abstract `open(role)` clashes with `TufRepo.open`,
and its `edit()` re-signs one role at a time where a publish must order three.
"""

import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.serialization import load_pem_private_key

# Both packages re-export these names without __all__, which mypy --strict refuses.
from securesystemslib.signer import CryptoSigner
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError

from uptend.durable import fsync_dir, write_atomically
from uptend.errors import ConfigError, ConflictError

ROLES = (Root.type, Targets.type, Snapshot.type, Timestamp.type)
_S = TypeVar("_S", Root, Targets, Snapshot, Timestamp)  # as tuf.api.metadata.T


@dataclass(frozen=True, slots=True)
class Expiry:
    """Metadata lifetimes in seconds."""

    root_s: int = 365 * 86400
    targets_s: int = 365 * 86400
    snapshot_s: int = 7 * 86400
    timestamp_s: int = 86400

    def of(self, role: str) -> timedelta:
        return timedelta(seconds=getattr(self, f"{role}_s"))


@dataclass(frozen=True, slots=True)
class _Published:
    """The state `timestamp.json` commits to."""

    targets: Metadata[Targets]
    snapshot: Metadata[Snapshot]
    timestamp: Metadata[Timestamp]


class TufRepo:
    """A TUF repository on disk; get one with `create` or `open`."""

    def __init__(
        self,
        root: Path,
        root_md: Metadata[Root],
        signers: dict[str, CryptoSigner],
        expiry: Expiry,
    ) -> None:
        self.root = root
        self.metadata_dir = root / "metadata"
        self.targets_dir = root / "targets"
        self._root = root_md.signed
        self._signers = signers
        self._expiry = expiry
        self._state = self._load()  # a cache for readers; mutations always re-read

    @classmethod
    def create(cls, root: Path, *, expiry: Expiry = Expiry()) -> "TufRepo":
        """Generate keys and version 1 of all metadata in `root`, which must be missing or empty.

        Raises:
            ConflictError: `root` exists and is not an empty directory.
        """
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise ConflictError(
                f"{root} exists and is not empty", hint="create the repository in a new directory"
            )
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.creating-"))
        try:
            tmp.chmod(0o755)  # metadata/ and targets/ are public; keys/ is 0700 below
            _build(tmp, expiry, datetime.now(UTC))
            tmp.replace(root)  # rename(2) onto a missing or empty dir: all of it or none
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(root.parent)
        return cls.open(root, expiry=expiry)

    @classmethod
    def open(cls, root: Path, *, expiry: Expiry = Expiry()) -> "TufRepo":
        """Load the keys and the published metadata of the repository in `root`.

        Raises:
            ConfigError: a file is missing, corrupt, or does not match root metadata.
        """
        versions = [p.name.split(".")[0] for p in (root / "metadata").glob("*.root.json")]
        latest = max((int(v) for v in versions if v.isdigit()), default=1)
        root_md = _read(root / "metadata" / f"{latest}.root.json", Root, None)
        signers = {}
        for role in ROLES:
            path = root / "keys" / f"{role}.pem"
            try:
                signer = CryptoSigner(load_pem_private_key(path.read_bytes(), None))
            except (OSError, ValueError, TypeError) as e:
                raise ConfigError(f"TUF key {path} is missing or unreadable: {e}") from None
            if signer.public_key.keyid not in root_md.signed.roles[role].keyids:
                raise ConfigError(f"TUF key {path} is not a {role} key of this repository's root")
            signers[role] = signer
        return cls(root, root_md, signers, expiry)

    def initial_root(self) -> bytes:
        """Return the exact bytes of `1.root.json`: the trust anchor agents bootstrap from."""
        return (self.metadata_dir / "1.root.json").read_bytes()

    def root_fingerprint(self) -> str:
        """Return the sha256 hex digest of `initial_root()`."""
        return hashlib.sha256(self.initial_root()).hexdigest()

    def has_target(self, name: str) -> bool:
        return name in self._current().targets.signed.targets

    def target_names(self) -> list[str]:
        return sorted(self._current().targets.signed.targets)

    def timestamp_expires(self) -> datetime:
        return self._current().timestamp.signed.expires

    def add_target(self, name: str, staged_file: Path, custom: dict[str, Any]) -> TargetFile:
        """Move `staged_file` into the repository as target `name` and publish it.

        Args:
            name: The target path, e.g. `demo/1.0/demo-1.0.tar.gz`.
            staged_file: The artifact, on the repository's filesystem; it is moved.
            custom: Signed with length and hashes; python-tuf does not validate it.

        Raises:
            ConfigError: `name` is not a safe relative path, or `staged_file` is on another
                filesystem.
            ConflictError: `name` is already a target.
        """
        parts = name.split("/")
        if any(p in ("", ".", "..") for p in parts) or "\\" in name or "\0" in name:
            raise ConfigError(f"invalid target name {name!r}", hint="use <app>/<version>/<file>")
        if staged_file.stat().st_dev != self.targets_dir.stat().st_dev:
            raise ConfigError(
                f"{staged_file} is not on the filesystem of {self.targets_dir}",
                hint="stage artifacts inside the server's data dir, so a rename can move them",
            )
        with self._locked():
            state = self._load()
            if name in state.targets.signed.targets:
                raise ConflictError(
                    f"target {name!r} is already published", hint="publish a new version"
                )
            with staged_file.open("rb") as f:
                target = TargetFile.from_data(name, f, ["sha256"])
                os.fchmod(f.fileno(), 0o644)
                os.fsync(f.fileno())
            target.unrecognized_fields["custom"] = custom
            dest = self.targets_dir / target.get_prefixed_paths()[0]
            now = datetime.now(UTC)
            state.targets.signed.targets[name] = target
            self._write(state.targets, now)
            dest.parent.mkdir(parents=True, exist_ok=True)
            staged_file.replace(dest)
            for d in (dest.parent, *dest.parent.parents):  # new dirs must be durable too
                fsync_dir(d)
                if d == self.targets_dir:
                    break
            self._publish(state, now, snapshot=True)  # only now can an agent see the target
        return target

    def refresh_expiring(self, now: datetime) -> bool:
        """Re-sign each role with less than half its lifetime left at `now`.

        A new targets or snapshot version implies new versions of the roles below it. Targets is
        re-signed too: with every key online, a year without a release must not leave agents
        with expired targets metadata (docs/architecture.md promise 2: expiry holds back
        installs fleet-wide).

        Args:
            now: An aware datetime; new expiries count from it.

        Returns:
            True if anything was re-signed.
        """
        with self._locked():
            state = self._load()
            due = {
                md.signed.type: md.signed.expires - now < self._expiry.of(md.signed.type) / 2
                for md in (state.targets, state.snapshot, state.timestamp)
            }
            if not any(due.values()):
                return False
            if due[Targets.type]:
                self._write(state.targets, now)
            self._publish(state, now, snapshot=due[Targets.type] or due[Snapshot.type])
            return True

    # --- internals ------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.root / ".lock").open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when f closes
            yield

    def _load(self, ts: Metadata[Timestamp] | None = None) -> _Published:
        """Read the published state, following timestamp.json (the commit point) down."""
        ts = ts or _read(self.metadata_dir / "timestamp.json", Timestamp, self._root)
        snapshot_v = ts.signed.snapshot_meta.version
        snap = _read(self.metadata_dir / f"{snapshot_v}.snapshot.json", Snapshot, self._root)
        targets_v = snap.signed.meta["targets.json"].version
        targets = _read(self.metadata_dir / f"{targets_v}.targets.json", Targets, self._root)
        return _Published(targets, snap, ts)

    def _current(self) -> _Published:
        """The published state for readers: re-read timestamp.json, the rest only if it moved."""
        cached = self._state
        ts = _read(self.metadata_dir / "timestamp.json", Timestamp, self._root)
        if ts.signed.snapshot_meta.version == cached.snapshot.signed.version:
            self._state = _Published(cached.targets, cached.snapshot, ts)
        else:
            self._state = self._load(ts)
        return self._state

    def _write(self, md: Metadata[_S], now: datetime) -> None:
        """Bump the version and expiry of `md`, sign it and write it (not a commit by itself)."""
        role = md.signed.type
        md.signed.version += 1
        md.signed.expires = now + self._expiry.of(role)
        md.sign(self._signers[role])
        name = "timestamp.json" if role == Timestamp.type else f"{md.signed.version}.{role}.json"
        write_atomically(self.metadata_dir / name, md.to_bytes())

    def _publish(self, state: _Published, now: datetime, *, snapshot: bool) -> None:
        if snapshot:
            state.snapshot.signed.meta["targets.json"] = MetaFile(state.targets.signed.version)
            self._write(state.snapshot, now)
        state.timestamp.signed.snapshot_meta = MetaFile(state.snapshot.signed.version)
        self._write(state.timestamp, now)  # the commit point: clients see all of it from here
        self._state = state


def _build(root: Path, expiry: Expiry, now: datetime) -> None:
    """Write keys and version 1 of every role into the fresh directory `root`."""
    signers = {role: CryptoSigner.generate_ed25519() for role in ROLES}
    (root / "keys").mkdir(mode=0o700)
    for role, signer in signers.items():
        write_atomically(root / "keys" / f"{role}.pem", signer.private_bytes, mode=0o600)
    (root / "metadata").mkdir()
    (root / "targets").mkdir()
    root_role = Root(expires=now + expiry.of(Root.type), consistent_snapshot=True)
    for role, signer in signers.items():
        root_role.add_key(signer.public_key, role)
    mds: tuple[Metadata[Any], ...] = (
        Metadata(root_role),
        Metadata(Targets(expires=now + expiry.of(Targets.type))),
        Metadata(Snapshot(expires=now + expiry.of(Snapshot.type))),
        Metadata(Timestamp(expires=now + expiry.of(Timestamp.type))),
    )
    for md in mds:
        role = md.signed.type
        md.sign(signers[role])
        name = "timestamp.json" if role == Timestamp.type else f"1.{role}.json"
        write_atomically(root / "metadata" / name, md.to_bytes())


def _read(path: Path, kind: type[_S], root: Root | None) -> Metadata[_S]:
    """Load `path` as `kind` metadata signed by its role's keys in `root` (or itself, for root).

    Raises:
        ConfigError: missing, corrupt, of another type, or not signed by the right key.
    """
    try:
        md: Metadata[Any] = Metadata.from_bytes(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(
            f"TUF metadata {path} is missing",
            hint="point the server at the data dir that holds its TUF repository",
        ) from None
    except (OSError, DeserializationError) as e:
        raise ConfigError(f"TUF metadata {path} is unreadable or corrupt: {e}") from None
    delegator: Root = md.signed if root is None else root  # root metadata signs itself
    if not isinstance(md.signed, kind):
        raise ConfigError(f"TUF metadata {path} holds {md.signed.type}, not {kind.type}")
    try:
        delegator.verify_delegate(kind.type, md.signed_bytes, md.signatures)
    except UnsignedMetadataError as e:
        raise ConfigError(
            f"TUF metadata {path} is not signed by its {kind.type} key: {e}"
        ) from None
    return md
