"""`TufRepo`: create, open, publish, re-sign and prune the repository (see the package doc)."""

import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Root, Snapshot, TargetFile, Targets, Timestamp

from uptend.durable import fsync_dir, write_atomically
from uptend.errors import ConfigError, ConflictError
from uptend.server.tuf_repo.files import (
    APP_ROLE,
    RELEASES_KEY,
    ROLES,
    app_of,
    app_role,
    new_key,
    write_md,
)
from uptend.server.tuf_repo.keyring import KEY_NAMES, OFFLINE, Keyring
from uptend.server.tuf_repo.lifetimes import Expiry, due, warning
from uptend.server.tuf_repo.rotation import Rotations
from uptend.server.tuf_repo.signed import accept, delegate, mark_below_floor
from uptend.server.tuf_repo.store import Published

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """One key and the metadata it signs, for `uptend keys show`."""

    key: str
    keyids: list[str]
    where: str  # server | offline | missing
    version: int  # of the role's metadata (for releases: the app role expiring first)
    expires: datetime
    warning: str | None


class TufRepo(Rotations):
    """A TUF repository on disk; get one with `create` or `open`."""

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
    def open(
        cls, root: Path, *, expiry: Expiry = Expiry(), keys: tuple[Path, ...] = ()
    ) -> "TufRepo":
        """Load the keys and the published metadata of the repository in `root`.

        Args:
            root: The repository's directory (`tuf/` in a server's data dir).
            expiry: Lifetimes of the metadata this process writes.
            keys: Offline keys dirs to look in after `root/keys` (for key ceremonies).

        Raises:
            ConfigError: a file is missing, corrupt, or does not match the metadata.
        """
        repo = cls(root, Keyring(root / "keys", keys), expiry)
        if repo.keyring.staged_any():
            with repo._locked():  # finishes or discards what a killed rotation left
                pass
        else:
            repo._load_keys(repo._state)
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

    def add_target(
        self,
        name: str,
        staged_file: Path,
        custom: dict[str, Any],
        signed: Mapping[str, Metadata[Targets]] | None = None,
        *,
        floor: str | None = None,
    ) -> TargetFile:
        """Move `staged_file` into the repository as target `name` and publish it.

        Args:
            name: The target path, `<app>/<version>/<file>`, e.g. `demo/1.0/demo-1.0.tar.gz`;
                it goes into the role of `<app>`.
            staged_file: The artifact, on the repository's filesystem; it is moved.
            custom: Signed with length and hashes; python-tuf does not validate it.
            signed: The app's next role (and top-level targets role) signed on the
                publisher's workstation (`signed.sign_release`); None: sign here with the
                releases key, which the offline mode does not have.
            floor: The new target is the app's floor (its version): every lower target of
                the app is re-signed with `floor` in its custom, so an agent refuses it.

        Raises:
            ConfigError: `name` is not a safe `<app>/<version>/<file>` path, `staged_file`
                is on another filesystem, or nothing signed it and the keys are offline.
            ConflictError: `name` is already a target.
            VerificationError: `signed` does not verify (see `signed.accept`).
        """
        role = app_role(app_of(name))
        if staged_file.stat().st_dev != self.targets_dir.stat().st_dev:
            raise ConfigError(
                f"{staged_file} is not on the filesystem of {self.targets_dir}",
                hint="stage artifacts inside the server's data dir, so a rename can move them",
            )
        with self._locked() as state:
            if signed is None and self.offline:
                raise ConfigError(
                    f"this server holds no key to sign {name}: its release keys are offline",
                    hint="sign it where the keys are with `uptend release sign`, then "
                    "`uptend release publish` the signed directory",
                )
            if floor is not None and signed is not None:
                raise ConfigError(
                    f"a floor re-signs every lower release of {app_of(name)}, and this server"
                    " holds no release key to do so",
                    hint="publish without --floor (a floor needs the release key on the server)",
                )
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
            if signed is None:
                if floor is not None and delegated is not None:
                    mark_below_floor(delegated.signed, floor)
                delegated = self._sign_here(state, role, delegated, target, now)
            else:
                delegated, top = accept(
                    signed,
                    root=self._root,
                    top=state.targets,
                    current=delegated,
                    role=role,
                    target=target,
                    now=now,
                )
                if top is not None:
                    write_md(self.metadata_dir, Targets.type, top)
                    state = Published(top, state.snapshot, state.timestamp)
                write_md(self.metadata_dir, role, delegated)
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
        Targets roles and root are re-signed too when their keys are here: a year without a
        release must not leave agents with expired metadata (docs/architecture.md promise 2:
        expiry holds back installs fleet-wide). A role whose key is offline is logged as a
        warning once it is near its expiry (`lifetimes.warning`).

        Args:
            now: An aware datetime; new expiries count from it, and pruning judges by it.

        Returns:
            True if anything was re-signed.

        Raises:
            ConfigError: an app's role does not verify; it was left as it is, the rest was
                re-signed (one bad role must not let every agent's timestamp expire).
        """

        def is_due(md: Metadata[Any]) -> bool:
            return due(md.signed.expires, now, self._expiry.of(md.signed.type))

        bad: list[ConfigError] = []
        with self._locked() as state:
            changed = {}
            releases = self._signers.get(RELEASES_KEY)
            for role in filter(lambda r: r.startswith(APP_ROLE), state.versions()):
                try:
                    md = self._role(state, role)
                except ConfigError as e:
                    bad.append(e)
                    continue
                if md is None or not is_due(md):
                    continue
                if releases is None:
                    self._warn(role, md.signed.expires, now)
                    continue
                self._write(md, now, role, [releases])
                changed[role] = md.signed.version
            if is_due(state.targets):
                if signer := self._signers.get(Targets.type):
                    self._write(state.targets, now, Targets.type, [signer])
                    changed[Targets.type] = state.targets.signed.version
                else:
                    self._warn(Targets.type, state.targets.signed.expires, now)
            resign = bool(changed) or is_due(state.snapshot) or is_due(state.timestamp)
            if resign:
                self._publish(state, now, changed, snapshot=is_due(state.snapshot))
            if is_due(self._root_md):
                if Root.type in self._signers:
                    self._renew_root(now, Metadata.from_bytes(self._root_md.to_bytes()), [])
                    log.warning("renewed root: version %d expires %s", *self._root_summary())
                    resign = True
                else:
                    self._warn(Root.type, self._root.expires, now)
            self._prune(state, now.timestamp())
        if bad:
            raise bad[0]
        return resign

    def key_status(self, now: datetime) -> list[KeyStatus]:
        """Each key: its ids, where it is, the version and expiry of what it signs."""
        state = self._current()
        out = []
        apps = [self._role(state, r) for r in state.versions() if r.startswith(APP_ROLE)]
        for name in KEY_NAMES:
            md: Metadata[Any] | None
            if name == RELEASES_KEY:
                keyids = sorted(state.delegated_keyids())
                md = min(filter(None, apps), key=lambda m: m.signed.expires, default=None)
                if md is None:
                    continue
            else:
                tops: dict[str, Metadata[Any]] = {
                    Root.type: self._root_md,
                    Targets.type: state.targets,
                    Snapshot.type: state.snapshot,
                    Timestamp.type: state.timestamp,
                }
                md = tops[name]
                keyids = list(self._root.roles[name].keyids)
            where = self.keyring.where(name)
            expires = md.signed.expires
            text = warning(name, expires, now, self._expiry.of("warn"))
            if where != "missing" and name not in (Root.type, Targets.type, RELEASES_KEY):
                text = None  # the server re-signs these within their life
            out.append(KeyStatus(name, keyids, where, md.signed.version, expires, text))
        return out

    def export_offline(self, dest: Path, now: datetime) -> list[Path]:
        """Move the root, targets and releases keys into `dest`: the offline mode.

        Raises:
            ConfigError: they are not all on the server.
        """
        with self._locked() as state:
            if self.keyring.exported():
                raise ConfigError(
                    "this server's root, targets and releases keys were exported already",
                    hint="`uptend keys show DATA_DIR` says where each key is",
                )
            self._releases_signer(state.targets.signed)  # made now if no app has a role yet
            moved = self.keyring.export(OFFLINE, dest, now.isoformat(timespec="seconds"))
            self._load_keys(state)
        return moved

    # --- internals ------------------------------------------------------------------------

    def _root_summary(self) -> tuple[int, str]:
        return self._root.version, self._root.expires.isoformat(timespec="seconds")

    def _sign_here(
        self,
        state: Published,
        role: str,
        delegated: Metadata[Targets] | None,
        target: TargetFile,
        now: datetime,
    ) -> Metadata[Targets]:
        """Add `target` to the app's role signed with the releases key held here."""
        signer = self._releases_signer(state.targets.signed)
        if delegated is None:  # the app's first release: delegate to its new role
            delegate(state.targets.signed, role, signer.public_key)
            self._write(state.targets, now, Targets.type, [self._signer(Targets.type)])
            delegated = Metadata(Targets(expires=now, targets={target.path: target}))
            delegated.signed.version = 0  # _write makes it 1
        else:
            delegated.signed.targets[target.path] = target
        self._write(delegated, now, role, [signer])
        return delegated

    def _releases_signer(self, targets: Targets) -> CryptoSigner:
        """The key of every app's role; generated on first need if no role exists yet.

        Raises:
            ConfigError: roles are delegated but the key is missing (or offline).
        """
        if signer := self._signers.get(RELEASES_KEY):
            return signer
        delegated = targets.delegations is not None and bool(targets.delegations.roles)
        if delegated or self.offline:
            return self._signer(RELEASES_KEY)
        signer = new_key(self.keyring.server / f"{RELEASES_KEY}.pem")
        self._load_keys(self._state)
        return signer


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
