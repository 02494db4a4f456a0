"""`Store`: the repository's primitives: lock, published state, keys, sign, write, commit.

`TufRepo` builds publishing and re-signing on these, and `rotation.Rotations` the key
ceremonies. Each mutation takes the lock and calls `_fresh()`, which re-reads the newest
root and the keys whenever another process rotated, exported or renewed them (the keys
dirs' mtimes and one `stat` of the next root file tell), then `_load()`.
"""

import fcntl
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, Targets, Timestamp

from uptend.errors import ConfigError
from uptend.server.tuf_repo.files import RELEASES_KEY, S, file_name, load_key, read_md, write_md
from uptend.server.tuf_repo.keyring import KEY_NAMES, ROOT_KEYS, Keyring
from uptend.server.tuf_repo.lifetimes import Expiry, warning
from uptend.server.tuf_repo.prune import Pruner

log = logging.getLogger(__name__)
WARN_EVERY_S = 3600.0  # a warning about an expiry nobody here can prevent, once an hour


@dataclass(frozen=True, slots=True)
class Published:
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

    def delegated_keyids(self) -> set[str]:
        delegations = self.targets.signed.delegations
        return set(delegations.keys) if delegations else set()


def latest_root(metadata_dir: Path, above: Metadata[Root] | None = None) -> Metadata[Root]:
    """The newest `N.root.json`: probed upwards from `above`, else found by a listing."""
    if above is None:
        names = [p.name.split(".")[0] for p in metadata_dir.glob("*.root.json")]
        latest = max((int(v) for v in names if v.isdigit()), default=1)
        return read_md(metadata_dir / file_name(Root.type, latest), Root, None, Root.type)
    md = above
    while (path := metadata_dir / file_name(Root.type, md.signed.version + 1)).exists():
        md = read_md(path, Root, md.signed, Root.type)  # each root is signed by the one before
    return md


class Store:
    def __init__(self, root: Path, keyring: Keyring, expiry: Expiry) -> None:
        self.root = root
        self.metadata_dir = root / "metadata"
        self.targets_dir = root / "targets"
        self.keyring = keyring
        self._expiry = expiry
        self._pruner = Pruner(self.metadata_dir)
        self._root_md = latest_root(self.metadata_dir)
        self._signers: dict[str, CryptoSigner] = {}  # the keys found; RELEASES_KEY included
        self._stamp: tuple[int, ...] = ()
        self._warned: dict[str, float] = {}
        self._state = self._load()  # a cache for readers; mutations always re-read

    @property
    def _root(self) -> Root:
        return self._root_md.signed

    @property
    def offline(self) -> bool:
        """Whether the top-level targets key is away from here (`keys export-targets`)."""
        return Targets.type not in self._signers

    @contextmanager
    def _locked(self) -> Iterator[Published]:
        """Hold the repository lock; yield the published state, keys and root re-read."""
        with (self.root / ".lock").open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when f closes
            yield self._fresh()

    def _fresh(self) -> Published:
        newest = latest_root(self.metadata_dir, self._root_md)
        rooted = newest.signed.version != self._root.version
        self._root_md = newest
        state = self._load()
        if rooted or self.keyring.stamp() != self._stamp:
            if self.keyring.staged_any():
                self._finish_rotations(state)  # loads the keys too
            else:
                self._load_keys(state)
        return state

    def _load_keys(self, state: Published) -> None:
        """Load every key found that the published metadata trusts; refuse one it does not.

        Raises:
            ConfigError: the snapshot or timestamp key is missing, or a key is not trusted.
        """
        signers = {}
        for name in KEY_NAMES:
            signer = self.keyring.load(name)
            if signer is None:
                optional = name == RELEASES_KEY and not state.delegated_keyids()
                if not (optional or name in self.keyring.exported()):
                    raise ConfigError(
                        f"TUF key {self.keyring.server / f'{name}.pem'} is missing",
                        hint="restore it from a backup of this server's tuf/keys/",
                    )
                continue
            if name in ROOT_KEYS:
                trusted = signer.public_key.keyid in self._root.roles[name].keyids
                what = f"a {name} key of this repository's root"
            else:
                keyids = state.delegated_keyids()
                trusted = not keyids or signer.public_key.keyid in keyids
                what = "the releases key of this repository's targets metadata"
            if not trusted:
                raise ConfigError(
                    f"TUF key {self.keyring.path(name)} is not {what}",
                    hint="restore the key this repository trusts; `uptend keys show` lists ids",
                )
            signers[name] = signer
        self._signers = signers
        self._stamp = self.keyring.stamp()

    def _finish_rotations(self, state: Published) -> None:
        """Promote or discard the staged keys of rotations killed half way (see keyring)."""
        for name, staged in self.keyring.staged():
            if name not in KEY_NAMES:
                continue
            keyid = load_key(staged).public_key.keyid
            if name in ROOT_KEYS:
                published = keyid in self._root.roles[name].keyids
            else:
                published = keyid in state.delegated_keyids()
            if not published:
                staged.unlink()
                log.warning("discarded the %s key of a rotation that did not publish", name)
                continue
            current = staged.with_name(f"{name}.pem")
            old = load_key(current).public_key.keyid if current.exists() else "unknown"
            self.keyring.promote(name, staged, old)
            log.warning("finished the rotation of the %s key that was interrupted", name)
        self._load_keys(state)

    def _load(self, ts: Metadata[Timestamp] | None = None) -> Published:
        """Read the published state, following timestamp.json (the commit point) down."""
        ts = ts or self._read(Timestamp.type, 0, Timestamp, self._root)
        snap = self._read(Snapshot.type, ts.signed.snapshot_meta.version, Snapshot, self._root)
        targets_v = snap.signed.meta["targets.json"].version
        targets = self._read(Targets.type, targets_v, Targets, self._root)
        return Published(targets, snap, ts)

    def _current(self) -> Published:
        """The published state for readers: re-read timestamp.json, the rest only if it moved."""
        cached = self._state
        self._root_md = latest_root(self.metadata_dir, self._root_md)
        ts = self._read(Timestamp.type, 0, Timestamp, self._root)
        if ts.signed.snapshot_meta.version == cached.snapshot.signed.version:
            self._state = Published(cached.targets, cached.snapshot, ts)
        else:
            self._state = self._load(ts)
        return self._state

    def _read(
        self, role: str, version: int, kind: type[S], delegator: Root | Targets
    ) -> Metadata[S]:
        return read_md(self.metadata_dir / file_name(role, version), kind, delegator, role)

    def _role(self, state: Published, role: str) -> Metadata[Targets] | None:
        """The published metadata of an app's role, or None if the app has no role yet."""
        meta = state.snapshot.signed.meta.get(f"{role}.json")
        if meta is None:
            return None
        return self._read(role, meta.version, Targets, state.targets.signed)

    def _signer(self, name: str) -> CryptoSigner:
        """Raises: ConfigError: key `name` is not here (it was exported, or never made)."""
        if signer := self._signers.get(name):
            return signer
        raise ConfigError(
            f"the {name} key is not on this server (it is kept offline)",
            hint=f"pass --keys DIR, the directory holding {name}.pem",
        )

    def _write(
        self, md: Metadata[Any], now: datetime, role: str, signers: Sequence[CryptoSigner]
    ) -> None:
        """Bump the version and expiry of `md`, sign it and write it (not a commit by itself)."""
        md.signed.version += 1
        md.signed.expires = now + self._expiry.of(md.signed.type)
        for i, signer in enumerate(signers):
            md.sign(signer, append=i > 0)
        write_md(self.metadata_dir, role, md)

    def _publish(
        self,
        state: Published,
        now: datetime,
        changed: Mapping[str, int],
        *,
        snapshot: bool,
        also: Mapping[str, CryptoSigner] | None = None,
    ) -> None:
        """Write a snapshot naming the `changed` role versions (if any, or if asked).

        Then the timestamp: the commit point. `also` adds a second signature (the old key
        of a role being rotated) so that clients trusting either root accept both files.
        """
        also = also or {}

        def keys(role: str) -> list[CryptoSigner]:
            return [self._signer(role), *([also[role]] if role in also else [])]

        if snapshot or changed:
            for role, version in changed.items():
                state.snapshot.signed.meta[f"{role}.json"] = MetaFile(version)
            self._write(state.snapshot, now, Snapshot.type, keys(Snapshot.type))
        state.timestamp.signed.snapshot_meta = MetaFile(state.snapshot.signed.version)
        self._write(state.timestamp, now, Timestamp.type, keys(Timestamp.type))
        self._state = state

    def _prune(self, state: Published, now_s: float) -> None:
        """Prune after a commit; a failure is logged, never raised (the publish stands)."""
        try:
            self._pruner(state.versions(), now_s - self._expiry.superseded_s)
        except OSError as e:
            log.warning("pruning superseded TUF metadata failed; will retry: %s", e)

    def _warn(self, role: str, expires: datetime, now: datetime) -> None:
        """Log, once an hour, that `role` will expire and nobody here can re-sign it."""
        text = warning(role, expires, now, self._expiry.of("warn"))
        last = self._warned.get(role)
        if text and (last is None or time.monotonic() - last >= WARN_EVERY_S):
            self._warned[role] = time.monotonic()
            log.warning("%s", text)
