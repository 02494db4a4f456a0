"""The repository's files: metadata names, signed reads, durable writes, private keys."""

import contextlib
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.serialization import load_pem_private_key

# Both packages re-export these names without __all__, which mypy --strict refuses.
from securesystemslib.signer import CryptoSigner
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp
from tuf.api.serialization import DeserializationError

from uptend.durable import write_atomically
from uptend.errors import ConfigError
from uptend.protocol.names import check_name

ROLES = (Root.type, Targets.type, Snapshot.type, Timestamp.type)
# The online key of every app's delegated role (a key name, not a role): the top-level
# targets role lists it and root does not, so the targets key can go offline (issue 10).
RELEASES_KEY = "releases"
APP_ROLE = "app."  # + the app's name: why this shape is in the package docstring
S = TypeVar("S", Root, Targets, Snapshot, Timestamp)  # as tuf.api.metadata.T


def app_role(app: str) -> str:
    """The delegated targets role of `app`."""
    return f"{APP_ROLE}{app}"


def app_of(name: str) -> str:
    """The app of target `name`, which must be a safe `<app>/<version>/<file>`."""
    parts = name.split("/")
    plain = "\\" not in name and "\0" not in name
    if len(parts) == 3 and plain and all(p not in ("", ".", "..") for p in parts):
        with contextlib.suppress(ConfigError):
            return check_name("app", parts[0])
    raise ConfigError(f"invalid target name {name!r}", hint="use <app>/<version>/<file>")


def file_name(role: str, version: int) -> str:
    """The consistent-snapshot name ngclient asks for: `N.<role>.json`, `timestamp.json`."""
    return "timestamp.json" if role == Timestamp.type else f"{version}.{role}.json"


def parse_file_name(name: str) -> tuple[int, str] | None:
    """(version, role) of a name like `12.app.demo.json`; None for anything else."""
    head, dot, rest = name.partition(".")
    if not dot or not head.isdigit() or not rest.endswith(".json") or rest == ".json":
        return None
    return int(head), rest.removesuffix(".json")


def write_md(metadata_dir: Path, role: str, md: Metadata[Any]) -> None:
    write_atomically(metadata_dir / file_name(role, md.signed.version), md.to_bytes())


def read_md(path: Path, kind: type[S], delegator: Root | Targets | None, role: str) -> Metadata[S]:
    """Load `path` as `kind` metadata of `role`, signed by the keys `delegator` gives it.

    `delegator` is root for the top-level roles, the top-level targets for an app's role, and
    None for root itself (which signs itself).

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
    signer_of: Root | Targets = delegator or md.signed  # root signs itself (checked next)
    if not isinstance(md.signed, kind):
        raise ConfigError(f"TUF metadata {path} holds {md.signed.type}, not {kind.type}")
    try:
        signer_of.verify_delegate(role, md.signed_bytes, md.signatures)
    except (UnsignedMetadataError, ValueError) as e:  # ValueError: role not delegated
        raise ConfigError(f"TUF metadata {path} is not signed by its {role} key: {e}") from None
    return md


def load_key(path: Path) -> CryptoSigner:
    """Raises: ConfigError: the key file is missing or not a private key."""
    try:
        return CryptoSigner(load_pem_private_key(path.read_bytes(), None))
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError(f"TUF key {path} is missing or unreadable: {e}") from None


def new_key(path: Path) -> CryptoSigner:
    """Generate an ed25519 key and store it in `path` (0600; its dir is 0700)."""
    signer = CryptoSigner.generate_ed25519()
    write_atomically(path, signer.private_bytes, mode=0o600)
    return signer
