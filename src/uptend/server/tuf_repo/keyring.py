"""Where the repository's private keys live: the server's `keys/` dir, and offline dirs.

Five keys, each a `<name>.pem` (ed25519, 0600, in a 0700 dir): `root`, `targets`, `snapshot`
and `timestamp` are listed by root metadata; `releases` signs every app's delegated role and
is listed by the top-level targets role. `snapshot` and `timestamp` always stay on the server
(it re-signs them on its own); `root`, `targets` and `releases` may live in an offline dir
(`uptend keys export-targets`), which a command that needs them is given with `--keys DIR`.

A rotation is crash-safe with a staged key: the new key is written as `<name>.next.pem` next
to the current one before any metadata names it, and promoted (the current one moved to
`retired/<name>-<keyid>.pem`, the staged one renamed to `<name>.pem`) once the metadata that
trusts it is published. `TufRepo.open` finishes or discards a staged key left by a rotation
that was killed: promoted if published metadata trusts it, deleted otherwise. Retired keys are
kept, not deleted: an agent that has not yet fetched the new root still trusts them, so they
are evidence and must be destroyed by the operator once the fleet has moved on.
"""

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Root, Snapshot, Targets, Timestamp

from uptend.durable import fsync_dir, write_atomically
from uptend.errors import ConfigError
from uptend.server.tuf_repo.files import RELEASES_KEY, load_key, new_key

ROOT_KEYS = (Root.type, Targets.type, Snapshot.type, Timestamp.type)  # listed by root
KEY_NAMES = (*ROOT_KEYS, RELEASES_KEY)
OFFLINE = (Root.type, Targets.type, RELEASES_KEY)  # what `keys export-targets` moves
STAGED = ".next.pem"
EXPORTED = "offline.json"  # in the server's dir: which keys `export` moved away, and when
RETIRED = "retired"


class Keyring:
    """The private keys found in the server's keys dir, then in each offline dir given."""

    def __init__(self, server: Path, offline: Sequence[Path] = ()) -> None:
        self.server = server
        self.offline = tuple(offline)

    @property
    def dirs(self) -> tuple[Path, ...]:
        return (self.server, *self.offline)

    def path(self, name: str) -> Path | None:
        """The file of key `name`, or None when no dir holds it."""
        return next((p for d in self.dirs if (p := d / f"{name}.pem").is_file()), None)

    def where(self, name: str) -> str:
        """`server`, `offline` or `missing`: where key `name` is, for `keys show`."""
        path = self.path(name)
        if path is None:
            return "missing"
        return "server" if path.parent == self.server else "offline"

    def load(self, name: str) -> CryptoSigner | None:
        path = self.path(name)
        return None if path is None else load_key(path)

    def stage(self, name: str) -> Path:
        """Generate the next key of `name` beside the current one; return its file."""
        current = self.path(name)
        if current is None:
            raise ConfigError(f"the {name} key is not here", hint="pass --keys DIR")
        staged = current.with_name(f"{name}{STAGED}")
        new_key(staged)
        return staged

    def staged(self) -> Iterator[tuple[str, Path]]:
        for d in self.dirs:
            for p in sorted(d.glob(f"*{STAGED}")):
                yield p.name.removesuffix(STAGED), p

    def staged_any(self) -> bool:
        return any(True for _ in self.staged())

    def promote(self, name: str, staged: Path, old_keyid: str) -> Path:
        """Retire the current key of `name` (kept under retired/) and put `staged` in its place."""
        current = staged.with_name(f"{name}.pem")
        if current.exists():
            retired = current.parent / RETIRED
            retired.mkdir(mode=0o700, exist_ok=True)
            current.replace(retired / f"{name}-{old_keyid[:16]}.pem")
            fsync_dir(retired)
        staged.replace(current)
        fsync_dir(current.parent)
        return current

    def exported(self) -> list[str]:
        """The keys moved off the server: their absence is the offline mode, not an error."""
        try:
            names = json.loads((self.server / EXPORTED).read_text())["keys"]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{self.server / EXPORTED} is unreadable: {e}") from None
        return [str(n) for n in names]

    def retired(self) -> list[Path]:
        return sorted(p for d in self.dirs for p in (d / RETIRED).glob("*.pem"))

    def stamp(self) -> tuple[int, ...]:
        """Changes whenever a key file is added, renamed or removed in any dir."""
        return tuple(d.stat().st_mtime_ns if d.is_dir() else -1 for d in self.dirs)

    def export(self, names: Sequence[str], dest: Path, at: str) -> list[Path]:
        """Move keys `names` from the server's dir into `dest`: copied durably, then deleted.

        Raises:
            ConfigError: a key is not on the server, or `dest` already holds one of that name.
        """
        sources = [self.server / f"{name}.pem" for name in names]
        missing = [p for p in sources if not p.is_file()]
        if missing:
            raise ConfigError(
                f"{missing[0]} is not on this server: its keys were exported already?",
                hint="`uptend keys show DATA_DIR` says where each key is",
            )
        dest.mkdir(mode=0o700, parents=True, exist_ok=True)
        dest.chmod(0o700)
        clash = [dest / p.name for p in sources if (dest / p.name).exists()]
        if clash:
            raise ConfigError(f"{clash[0]} already exists", hint="export into an empty directory")
        moved = []
        for src in sources:
            write_atomically(dest / src.name, src.read_bytes(), mode=0o600)
            moved.append(dest / src.name)
        record = {"keys": [*self.exported(), *names], "at": at}
        write_atomically(self.server / EXPORTED, json.dumps(record).encode(), mode=0o600)
        for src in sources:  # only once every copy is durable
            _shred(src)
        fsync_dir(self.server)
        return moved


def _shred(path: Path) -> None:
    """Overwrite then delete: a best effort (copy-on-write filesystems keep old blocks)."""
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.write(os.urandom(size))
        f.flush()
        os.fsync(f.fileno())
    path.unlink()
