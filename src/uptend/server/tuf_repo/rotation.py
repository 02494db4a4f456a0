"""Key ceremonies: rotate any of the five keys, renew root; enrolled agents follow each one.

Rotating a key listed by root (`root`, `targets`, `snapshot`, `timestamp`) writes root N+1,
which lists the new key in place of the old, signed by the old root key and the new root
keys (for a root rotation, the old and the new root key: python-tuf's client checks the
threshold of both). Agents fetch `N+1.root.json` before anything else at their next refresh
and walk the chain from the root they trust, so every enrolled agent follows.

Order, so that no client ever sees a state it must refuse (docs/architecture.md promise 2):
1. the new key is staged (`<name>.next.pem`, see keyring);
2. the rotated role's metadata is re-signed by the old *and* the new key and committed
   (snapshot, then timestamp): clients still on root N accept it (the old key's signature),
   and so do clients on root N+1 (the new key's);
3. root N+1 is written: from then on only the new key counts;
4. the old key file moves to `retired/` and the staged one takes its place.
A kill at any point leaves a state both kinds of client accept; the next open finishes or
discards the staged key.

The releases key is listed by the top-level targets role, not root: its rotation writes the
next top-level targets role delegating every app's role to the new key, and every app's role
signed by it, committed together by one snapshot and timestamp.
"""

import logging
from dataclasses import dataclass
from datetime import datetime

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp

from uptend.errors import ConfigError
from uptend.server.tuf_repo.files import APP_ROLE, RELEASES_KEY, load_key
from uptend.server.tuf_repo.keyring import KEY_NAMES
from uptend.server.tuf_repo.signed import swap_delegated_key
from uptend.server.tuf_repo.store import Published, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rotated:
    """What `rotate` did, for `uptend keys rotate --json`."""

    key: str
    old_keyid: str
    new_keyid: str
    root_version: int  # the root now published (unchanged for the releases key)


class Rotations(Store):
    def rotate(self, name: str, now: datetime) -> Rotated:
        """Replace key `name` with a new one, published so that enrolled agents follow.

        Raises:
            ConfigError: `name` is not a key, or a key the ceremony needs is not here.
        """
        if name not in KEY_NAMES:
            raise ConfigError(f"no TUF key is called {name!r}", hint=f"one of {list(KEY_NAMES)}")
        with self._locked() as state:
            old = self._signer(name)
            self._signer(Targets.type if name == RELEASES_KEY else Root.type)  # needed too
            staged = self.keyring.stage(name)
            new = load_key(staged)
            if name == RELEASES_KEY:
                self._rotate_releases(state, now, new)
            else:
                self._rotate_listed(state, now, name, old, new)
            self.keyring.promote(name, staged, old.public_key.keyid)
            self._load_keys(self._state)
        log.warning(
            "rotated the %s key: %s -> %s (the old one is under %s/retired/)",
            name,
            old.public_key.keyid[:16],
            new.public_key.keyid[:16],
            staged.parent,
        )
        return Rotated(name, old.public_key.keyid, new.public_key.keyid, self._root.version)

    def _renew_root(self, now: datetime, md: Metadata[Root], extra: list[CryptoSigner]) -> None:
        """Write `md` as the next root, signed by the root key (and `extra`): clients see it."""
        self._write(md, now, Root.type, [self._signer(Root.type), *extra])
        self._root_md = md

    def _rotate_listed(
        self, state: Published, now: datetime, name: str, old: CryptoSigner, new: CryptoSigner
    ) -> None:
        root_md: Metadata[Root] = Metadata.from_bytes(self._root_md.to_bytes())
        root_md.signed.revoke_key(old.public_key.keyid, name)
        root_md.signed.add_key(new.public_key, name)
        if name == Targets.type:
            self._write(state.targets, now, Targets.type, [new, old])
            self._publish(state, now, {Targets.type: state.targets.signed.version}, snapshot=True)
        elif name in (Snapshot.type, Timestamp.type):
            self._signers[name] = new
            self._publish(state, now, {}, snapshot=name == Snapshot.type, also={name: old})
        # step 3: for the root key itself, signed by the old root key and the new
        self._renew_root(now, root_md, [new] if name == Root.type else [])
        self._signers[name] = new

    def _rotate_releases(self, state: Published, now: datetime, new: CryptoSigner) -> None:
        roles = [r for r in state.versions() if r.startswith(APP_ROLE)]
        apps = {r: md for r in roles if (md := self._role(state, r)) is not None}  # old trust
        swap_delegated_key(state.targets.signed, new.public_key)
        self._write(state.targets, now, Targets.type, [self._signer(Targets.type)])
        changed = {Targets.type: state.targets.signed.version}
        for role, md in apps.items():
            self._write(md, now, role, [new])
            changed[role] = md.signed.version
        self._signers[RELEASES_KEY] = new
        self._publish(state, now, changed, snapshot=True)
