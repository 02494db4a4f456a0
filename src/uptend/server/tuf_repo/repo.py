"""`TufRepo`: create, open, publish, re-sign and prune the repository (see the package doc)."""

import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)

from uptend.durable import fsync_dir, write_atomically
from uptend.errors import ConfigError, ConflictError
from uptend.server.tuf_repo.files import (
    APP_ROLE,
    RELEASES_KEY,
    ROLES,
    S,
    app_of,
    app_role,
    file_name,
    load_key,
    new_key,
    read_md,
    write_md,
)
from uptend.server.tuf_repo.prune import Pruner

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Expiry:
    """Metadata lifetimes in seconds, and how long superseded metadata stays on disk.

    `targets_s` is also the lifetime of every app's role; `superseded_s` is the grace period
    for clients still fetching what an older timestamp.json names.
    """

    root_s: int = 365 * 86400
    targets_s: int = 365 * 86400
    snapshot_s: int = 7 * 86400
    timestamp_s: int = 86400
    superseded_s: int = 15 * 60

    def of(self, role_type: str) -> timedelta:
        return timedelta(seconds=getattr(self, f"{role_type}_s"))


@dataclass(frozen=True, slots=True)
class _Published:
    """The state `timestamp.json` commits to (app roles are read on demand)."""

    targets: Metadata[Targets]
    snapshot: Metadata[Snapshot]
    timestamp: Metadata[Timestamp]

    def versions(self) -> dict[str, int]:
        """Map each role but root and timestamp to its published version."""
        meta = self.snapshot.signed.meta
        return {Snapshot.type: self.snapshot.signed.version} | {
            name.removesuffix(".json"): m.version for name, m in meta.items()
        }


class TufRepo:
    """A TUF repository on disk; get one with `create` or `open`."""

    def __init__(
        self, root: Path, root_md: Metadata[Root], signers: dict[str, CryptoSigner], expiry: Expiry
    ) -> None:
        self.root = root
        self.metadata_dir = root / "metadata"
        self.targets_dir = root / "targets"
        self._root = root_md.signed
        self._signers = signers  # the top-level roles' keys, and RELEASES_KEY once needed
        self._expiry = expiry
        self._pruner = Pruner(self.metadata_dir)
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
        root_md = read_md(root / "metadata" / f"{latest}.root.json", Root, None, Root.type)
        signers = {}
        for role in ROLES:
            path = root / "keys" / f"{role}.pem"
            signer = load_key(path)
            if signer.public_key.keyid not in root_md.signed.roles[role].keyids:
                raise ConfigError(f"TUF key {path} is not a {role} key of this repository's root")
            signers[role] = signer
        repo = cls(root, root_md, signers, expiry)
        delegations = repo._state.targets.signed.delegations
        if repo._releases_path().exists() or (delegations and delegations.roles):
            repo._releases_signer(repo._state.targets.signed)  # check it now, not at a publish
        return repo

    def initial_root(self) -> bytes:
        """Return the exact bytes of `1.root.json`: the trust anchor agents bootstrap from."""
        return (self.metadata_dir / "1.root.json").read_bytes()

    def root_fingerprint(self) -> str:
        """Return the sha256 hex digest of `initial_root()`."""
        return hashlib.sha256(self.initial_root()).hexdigest()

    def has_target(self, name: str) -> bool:
        state = self._current()
        if name in state.targets.signed.targets:
            return True
        role = self._role(state, app_role(name.split("/")[0]))
        return role is not None and name in role.signed.targets

    def target_names(self) -> list[str]:
        state = self._current()
        names = list(state.targets.signed.targets)
        for role in state.versions():
            if role.startswith(APP_ROLE) and (md := self._role(state, role)):
                names.extend(md.signed.targets)
        return sorted(names)

    def timestamp_expires(self) -> datetime:
        return self._current().timestamp.signed.expires

    def add_target(self, name: str, staged_file: Path, custom: dict[str, Any]) -> TargetFile:
        """Move `staged_file` into the repository as target `name` and publish it.

        Args:
            name: The target path, `<app>/<version>/<file>`, e.g. `demo/1.0/demo-1.0.tar.gz`;
                it goes into the role of `<app>`.
            staged_file: The artifact, on the repository's filesystem; it is moved.
            custom: Signed with length and hashes; python-tuf does not validate it.

        Raises:
            ConfigError: `name` is not a safe `<app>/<version>/<file>` path, or `staged_file`
                is on another filesystem.
            ConflictError: `name` is already a target.
        """
        role = app_role(app_of(name))
        if staged_file.stat().st_dev != self.targets_dir.stat().st_dev:
            raise ConfigError(
                f"{staged_file} is not on the filesystem of {self.targets_dir}",
                hint="stage artifacts inside the server's data dir, so a rename can move them",
            )
        with self._locked():
            state = self._load()
            delegated = self._role(state, role)
            if name in state.targets.signed.targets or (
                delegated is not None and name in delegated.signed.targets
            ):
                raise ConflictError(
                    f"target {name!r} is already published", hint="publish a new version"
                )
            with staged_file.open("rb") as f:
                target = TargetFile.from_data(name, f, ["sha256"])
                os.fchmod(f.fileno(), 0o644)
                os.fsync(f.fileno())
            target.unrecognized_fields["custom"] = custom
            now = datetime.now(UTC)
            if delegated is None:  # the app's first release: delegate to its new role
                self._delegate(state.targets, role, now)
                delegated = Metadata(Targets(expires=now, targets={name: target}))
                delegated.signed.version = 0  # _write makes it 1
            else:
                delegated.signed.targets[name] = target
            self._write(delegated, now, role, self._releases_signer(state.targets.signed))
            dest = self.targets_dir / target.get_prefixed_paths()[0]
            dest.parent.mkdir(parents=True, exist_ok=True)
            staged_file.replace(dest)
            for d in (dest.parent, *dest.parent.parents):  # new dirs must be durable too
                fsync_dir(d)
                if d == self.targets_dir:
                    break
            changed = {role: delegated.signed.version, Targets.type: state.targets.signed.version}
            self._publish(state, now, changed, snapshot=True)  # only now can agents see it
            self._prune(state, time.time())
        return target

    def refresh_expiring(self, now: datetime) -> bool:
        """Re-sign each role with less than half its lifetime left at `now`, then prune.

        A new targets-role or snapshot version implies new versions of the roles below it.
        Targets roles are re-signed too: with every key online, a year without a release must
        not leave agents with expired targets metadata (docs/architecture.md promise 2: expiry
        holds back installs fleet-wide).

        Args:
            now: An aware datetime; new expiries count from it, and pruning judges by it.

        Returns:
            True if anything was re-signed.

        Raises:
            ConfigError: an app's role does not verify; it was left as it is, the rest was
                re-signed (one bad role must not let every agent's timestamp expire).
        """

        def due(md: Metadata[Any]) -> bool:
            lifetime: timedelta = self._expiry.of(md.signed.type)
            return bool(md.signed.expires - now < lifetime / 2)

        bad: list[ConfigError] = []
        with self._locked():
            state = self._load()
            changed = {}
            for role in filter(lambda r: r.startswith(APP_ROLE), state.versions()):
                try:
                    md = self._role(state, role)
                except ConfigError as e:
                    bad.append(e)
                    continue
                if md is not None and due(md):
                    self._write(md, now, role, self._releases_signer(state.targets.signed))
                    changed[role] = md.signed.version
            if due(state.targets):
                self._write(state.targets, now, Targets.type, self._signers[Targets.type])
                changed[Targets.type] = state.targets.signed.version
            resign = bool(changed) or due(state.snapshot) or due(state.timestamp)
            if resign:
                self._publish(state, now, changed, snapshot=due(state.snapshot))
            self._prune(state, now.timestamp())
        if bad:
            raise bad[0]
        return resign

    # --- internals ------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.root / ".lock").open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when f closes
            yield

    def _load(self, ts: Metadata[Timestamp] | None = None) -> _Published:
        """Read the published state, following timestamp.json (the commit point) down."""
        ts = ts or self._read(Timestamp.type, 0, Timestamp, self._root)
        snap = self._read(Snapshot.type, ts.signed.snapshot_meta.version, Snapshot, self._root)
        targets_v = snap.signed.meta["targets.json"].version
        targets = self._read(Targets.type, targets_v, Targets, self._root)
        return _Published(targets, snap, ts)

    def _current(self) -> _Published:
        """The published state for readers: re-read timestamp.json, the rest only if it moved."""
        cached = self._state
        ts = self._read(Timestamp.type, 0, Timestamp, self._root)
        if ts.signed.snapshot_meta.version == cached.snapshot.signed.version:
            self._state = _Published(cached.targets, cached.snapshot, ts)
        else:
            self._state = self._load(ts)
        return self._state

    def _read(
        self, role: str, version: int, kind: type[S], delegator: Root | Targets
    ) -> Metadata[S]:
        return read_md(self.metadata_dir / file_name(role, version), kind, delegator, role)

    def _role(self, state: _Published, role: str) -> Metadata[Targets] | None:
        """The published metadata of an app's role, or None if the app has no role yet."""
        meta = state.snapshot.signed.meta.get(f"{role}.json")
        if meta is None:
            return None
        return self._read(role, meta.version, Targets, state.targets.signed)

    def _releases_path(self) -> Path:
        return self.root / "keys" / f"{RELEASES_KEY}.pem"

    def _releases_signer(self, targets: Targets) -> CryptoSigner:
        """The key of every app's role; generated on first need if no role exists yet.

        Raises:
            ConfigError: roles are delegated but the key is missing, or it is not theirs.
        """
        if signer := self._signers.get(RELEASES_KEY):
            return signer
        path = self._releases_path()
        delegated = targets.delegations is not None and bool(targets.delegations.roles)
        signer = load_key(path) if path.exists() or delegated else new_key(path)
        keys = targets.delegations.keys if targets.delegations else {}
        if keys and signer.public_key.keyid not in keys:
            raise ConfigError(
                f"TUF key {path} is not the releases key of this repository's targets metadata",
                hint="restore the releases.pem this repository was made with",
            )
        self._signers[RELEASES_KEY] = signer
        return signer

    def _delegate(self, targets: Metadata[Targets], role: str, now: datetime) -> None:
        """Add `role` to the top-level targets role and write its next version."""
        key = self._releases_signer(targets.signed).public_key
        delegations = targets.signed.delegations or Delegations(keys={}, roles={})
        if delegations.roles is None:
            raise ConfigError("the top-level targets role uses succinct (hash-bin) delegation")
        delegations.keys[key.keyid] = key
        app = role.removeprefix(APP_ROLE)
        delegations.roles[role] = DelegatedRole(role, [key.keyid], 1, True, [f"{app}/*/*"])
        targets.signed.delegations = delegations
        self._write(targets, now, Targets.type, self._signers[Targets.type])

    def _write(self, md: Metadata[Any], now: datetime, role: str, signer: CryptoSigner) -> None:
        """Bump the version and expiry of `md`, sign it and write it (not a commit by itself)."""
        md.signed.version += 1
        md.signed.expires = now + self._expiry.of(md.signed.type)
        md.sign(signer)
        write_md(self.metadata_dir, role, md)

    def _publish(
        self, state: _Published, now: datetime, changed: Mapping[str, int], *, snapshot: bool
    ) -> None:
        """Write a snapshot naming the `changed` role versions (if any, or if asked).

        Then the timestamp: the commit point.
        """
        if snapshot or changed:
            for role, version in changed.items():
                state.snapshot.signed.meta[f"{role}.json"] = MetaFile(version)
            self._write(state.snapshot, now, Snapshot.type, self._signers[Snapshot.type])
        state.timestamp.signed.snapshot_meta = MetaFile(state.snapshot.signed.version)
        self._write(state.timestamp, now, Timestamp.type, self._signers[Timestamp.type])
        self._state = state

    def _prune(self, state: _Published, now_s: float) -> None:
        """Prune after a commit; a failure is logged, never raised (the publish stands)."""
        try:
            self._pruner(state.versions(), now_s - self._expiry.superseded_s)
        except OSError as e:
            log.warning("pruning superseded TUF metadata failed; will retry: %s", e)


def _build(root: Path, expiry: Expiry, now: datetime) -> None:
    """Write keys and version 1 of every top-level role into the fresh directory `root`."""
    signers = {role: CryptoSigner.generate_ed25519() for role in ROLES}
    (root / "keys").mkdir(mode=0o700)
    for role, signer in signers.items():
        write_atomically(root / "keys" / f"{role}.pem", signer.private_bytes, mode=0o600)
    new_key(root / "keys" / f"{RELEASES_KEY}.pem")  # delegated to at each app's first publish
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
        md.sign(signers[md.signed.type])
        write_md(root / "metadata", md.signed.type, md)
