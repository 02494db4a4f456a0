"""Releases signed away from the server: built on the workstation, checked on the server.

The offline mode (`uptend keys export-targets`) leaves the server with the snapshot and
timestamp keys only, so it can order and commit releases but never vouch for one. Then:

- The workstation (`sign_release`, behind `uptend release sign`) reads the app's published
  role from the server's public `/tuf/metadata/`, checks that its own releases key signed it
  (a server cannot slip targets into what the workstation re-signs), adds the one new
  target, bumps the version and signs it; for an app's first release it also signs the next
  top-level targets role, which delegates `app.<app>` to the releases key. The result goes
  into one JSON document (`encode`) uploaded with the archive.
- The server (`accept`, in `TufRepo.add_target`) takes it only if it verifies against the
  keys the published metadata trusts (root's targets keys for the top-level role, that role's
  delegation for the app's role), names the next version of each role, holds exactly the
  published targets plus the uploaded archive with the length, hashes and `custom` the server
  computed itself, and does not expire for at least a day. Then the server writes the
  snapshot and the timestamp as for any publish.

A compromised server can refuse, delay or reorder signed releases, or serve an older signed
state until its snapshot or timestamp expires; it cannot make an agent accept a target the
releases key did not sign (docs/threat-model.md).
"""

import json
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from securesystemslib.signer import CryptoSigner, Key
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError

from uptend.errors import ConfigError, VerificationError
from uptend.protocol.versions import parse_version
from uptend.server.tuf_repo.files import APP_ROLE, file_name

MAX_SIGNED_BYTES = 16 << 20  # an app's role grows ~270 B per release
MIN_LIFE = timedelta(days=1)


def delegate(targets: Targets, role: str, key: Key) -> None:
    """Delegate app role `role` to `key`: paths `<app>/*/*` only, terminating."""
    delegations = targets.delegations or Delegations(keys={}, roles={})
    if delegations.roles is None:
        raise ConfigError("the top-level targets role uses succinct (hash-bin) delegation")
    delegations.keys[key.keyid] = key
    app = role.removeprefix(APP_ROLE)
    delegations.roles[role] = DelegatedRole(role, [key.keyid], 1, True, [f"{app}/*/*"])
    targets.delegations = delegations


def mark_below_floor(role: Targets, floor: str) -> list[str]:
    """Put `floor` in the custom of every target of `role` below it; the paths marked.

    The role is then re-signed, so an agent that verified it refuses those versions whatever
    a server directs (a higher floor already there stays).
    """
    marked = []
    for path, target in role.targets.items():
        custom = target.unrecognized_fields.get("custom")
        if not isinstance(custom, dict) or not isinstance(custom.get("version"), str):
            continue
        old = custom.get("floor")
        if isinstance(old, str) and parse_version(old) >= parse_version(floor):
            continue
        if parse_version(custom["version"]) < parse_version(floor):
            custom["floor"] = floor
            marked.append(path)
    return marked


def swap_delegated_key(targets: Targets, new: Key) -> list[str]:
    """Make `new` the only key of every app role (a releases-key rotation); return the roles."""
    delegations = targets.delegations
    if delegations is None or delegations.roles is None:
        return []
    delegations.keys = {new.keyid: new}
    for role in delegations.roles.values():
        role.keyids = [new.keyid]
    return list(delegations.roles)


def encode(roles: Mapping[str, Metadata[Targets]]) -> bytes:
    return json.dumps({"roles": {n: md.to_dict() for n, md in roles.items()}}).encode()


def decode(data: bytes) -> dict[str, Metadata[Targets]]:
    """Raises: VerificationError: not the document `encode` writes."""
    try:
        doc = json.loads(data)
        roles = doc["roles"] if isinstance(doc, dict) else None
        if not isinstance(roles, dict) or not all(isinstance(v, dict) for v in roles.values()):
            raise ValueError("no roles")
        parsed: dict[str, Metadata[Any]] = {
            str(name): Metadata.from_dict(md) for name, md in roles.items()
        }
    except (ValueError, KeyError, TypeError, DeserializationError) as e:
        raise VerificationError(
            f"the signed release metadata is malformed: {e}",
            hint="sign the release again with `uptend release sign`",
        ) from None
    out: dict[str, Metadata[Targets]] = {}
    for name, md in parsed.items():
        if not isinstance(md.signed, Targets):
            raise VerificationError(f"signed role {name!r} is {md.signed.type}, not targets")
        out[name] = md
    return out


def accept(
    signed: Mapping[str, Metadata[Targets]],
    *,
    root: Root,
    top: Metadata[Targets],
    current: Metadata[Targets] | None,
    role: str,
    target: TargetFile,
    now: datetime,
) -> tuple[Metadata[Targets], Metadata[Targets] | None]:
    """Check a workstation's signed roles for publishing `target` in `role` (see module doc).

    Args:
        signed: What `decode` returned: `role`, and `targets` for an app's first release.
        root: The published root, whose targets keys the top-level role must verify with.
        top: The published top-level targets role.
        current: The app's published role; None before its first release.
        role: The app's role, `app.<app>`.
        target: The uploaded archive as the server computed it (length, hashes, custom).
        now: Expiries are judged against it.

    Returns:
        The app's new role, and the new top-level targets role if one was signed.

    Raises:
        VerificationError: anything above does not hold; nothing was written.
    """
    extra = set(signed) - {role, Targets.type}
    if extra or role not in signed:
        raise VerificationError(
            f"the signed metadata holds {sorted(signed)}, not the role {role!r}",
            hint="sign this very release with `uptend release sign`",
        )
    new_top = signed.get(Targets.type)
    if new_top is not None:
        _verify(root, Targets.type, new_top)
        _check_version(Targets.type, new_top, top.signed.version + 1, now)
        kept = top.signed.delegations.roles if top.signed.delegations else None
        now_roles = new_top.signed.delegations.roles if new_top.signed.delegations else None
        if kept and not set(kept) <= set(now_roles or {}):
            raise VerificationError("the signed top-level targets role drops an app's delegation")
    app_md = signed[role]
    _verify((new_top or top).signed, role, app_md)
    _check_version(role, app_md, (current.signed.version if current else 0) + 1, now)
    before = current.signed.targets if current else {}
    expected = {**before, target.path: target}
    if app_md.signed.targets != expected:
        changed = sorted(n for n in set(expected) | set(app_md.signed.targets)
                         if app_md.signed.targets.get(n) != expected.get(n))  # fmt: skip
        raise VerificationError(
            f"the signed {role} role does not hold exactly the published targets plus the "
            f"uploaded archive (differs at {changed[:3]})",
            hint="sign again against the server's current metadata, with the same archive",
        )
    return app_md, new_top


def _verify(delegator: Root | Targets, role: str, md: Metadata[Targets]) -> None:
    try:
        delegator.verify_delegate(role, md.signed_bytes, md.signatures)
    except (UnsignedMetadataError, ValueError) as e:  # ValueError: role not delegated
        raise VerificationError(
            f"the signed {role} role is not signed by the key this repository trusts: {e}",
            hint="sign with the current offline keys (`uptend keys show` lists their ids)",
        ) from None


def _check_version(role: str, md: Metadata[Targets], version: int, now: datetime) -> None:
    if md.signed.version != version:
        raise VerificationError(
            f"the signed {role} role is version {md.signed.version}, the next one is {version}",
            hint="something was published since it was signed: sign the release again",
        )
    if md.signed.expires - now < MIN_LIFE:
        raise VerificationError(f"the signed {role} role expires at {md.signed.expires}")


# --- the workstation side --------------------------------------------------------------


def sign_release(
    fetch: Callable[[str], bytes],
    signers: Mapping[str, CryptoSigner],
    target: TargetFile,
    now: datetime,
    lifetime: timedelta,
) -> dict[str, Metadata[Targets]]:
    """Build and sign the roles that publish `target`, from the server's published metadata.

    Args:
        fetch: Returns the bytes of a metadata file by name (`timestamp.json`, ...).
        signers: `releases`, and `targets` for an app's first release.
        target: The new target (its path names the app), with its `custom`.
        now: The signed roles' expiries count from it.
        lifetime: How long the signed roles stay valid.

    Raises:
        ConfigError: a key this needs is not among `signers`.
        VerificationError: the published metadata is not signed by these keys.
    """
    app = target.path.split("/")[0]
    role = f"{APP_ROLE}{app}"
    ts = _parse(fetch(file_name(Timestamp.type, 0)), Timestamp)
    snap = _parse(fetch(file_name(Snapshot.type, ts.signed.snapshot_meta.version)), Snapshot)
    top_v = snap.signed.meta["targets.json"].version
    top = _parse(fetch(file_name(Targets.type, top_v)), Targets)
    releases = _signer(signers, "releases")
    if (meta := snap.signed.meta.get(f"{role}.json")) is not None:
        _own(top.signed, role, releases.public_key)
        app_md = _parse(fetch(file_name(role, meta.version)), Targets)
        _signed_by(app_md, releases.public_key, role)
        out = {}
    else:
        targets = _signer(signers, "targets")
        _signed_by(top, targets.public_key, Targets.type)
        delegate(top.signed, role, releases.public_key)
        _resign(top, targets, now + lifetime)
        app_md = Metadata(Targets(expires=now))
        app_md.signed.version = 0  # _resign makes it 1
        out = {Targets.type: top}
    if target.path in app_md.signed.targets:
        raise ConfigError(f"target {target.path!r} is already published")
    app_md.signed.targets[target.path] = target
    _resign(app_md, releases, now + lifetime)
    return {**out, role: app_md}


def _resign(md: Metadata[Any], signer: CryptoSigner, expires: datetime) -> None:
    md.signed.version += 1
    md.signed.expires = expires
    md.sign(signer)


def _signer(signers: Mapping[str, CryptoSigner], name: str) -> CryptoSigner:
    if name not in signers:
        raise ConfigError(
            f"no {name} key in the keys dir", hint="pass --keys DIR of the offline keys"
        )
    return signers[name]


def _own(top: Targets, role: str, key: Key) -> None:
    roles = top.delegations.roles if top.delegations else None
    if not roles or role not in roles or roles[role].keyids != [key.keyid]:
        raise VerificationError(
            f"the server's targets metadata does not delegate {role} to this releases key",
            hint="use the current releases key (`uptend keys show` on the server lists its id)",
        )


def _signed_by(md: Metadata[Any], key: Key, role: str) -> None:
    sig = md.signatures.get(key.keyid)
    try:
        if sig is None:
            raise ValueError("no signature by it")
        key.verify_signature(sig, md.signed_bytes)
    except Exception as e:  # noqa: BLE001 - securesystemslib raises several kinds
        raise VerificationError(
            f"the server's {role} metadata is not signed by this keys dir's key: {e}",
            hint="the server or its metadata is not the one these keys belong to: stop and check",
        ) from None


def _parse(data: bytes, kind: type[Any]) -> Metadata[Any]:
    try:
        md: Metadata[Any] = Metadata.from_bytes(data)
    except DeserializationError as e:
        raise VerificationError(f"the server's TUF metadata is malformed: {e}") from None
    if not isinstance(md.signed, kind):
        raise VerificationError(f"expected {kind.type} metadata, got {md.signed.type}")
    return md
