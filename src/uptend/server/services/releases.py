"""Publishing a release: validate, sign as a TUF target, record; nothing half-published.

Versions are PEP 440 normalised before anything else, so the one spelling stored, signed and
put in the target path is the normal form, and a version equal to a published one of the app
(`1.0`, `1.00`, `1.0.0`) is a conflict whatever its spelling. Uploads are spooled to
`upload_dir` and consumed by the publish; what a killed server left there goes at the next
start (`remove_orphaned_uploads`).
"""

import logging
from functools import partial
from pathlib import Path

import anyio.to_thread

from uptend import archive, debmeta, rpmmeta
from uptend.errors import ConfigError, ConflictError, UptendError
from uptend.policy.pins import below, floor_of
from uptend.protocol import Release
from uptend.protocol.manifest import Manifest, parse_manifest
from uptend.protocol.names import check_name
from uptend.protocol.targets import AGENT_APP, ArchiveFormat, InstallKind, TargetCustom, target_path
from uptend.protocol.versions import normalize, same_version
from uptend.server.services import rollouts
from uptend.server.services.context import Context, utcnow
from uptend.server.settings import MAX_FILES, MAX_UNPACKED_BYTES
from uptend.server.storage import audit, generation
from uptend.server.storage import pins as pin_rows
from uptend.server.storage import releases as rows
from uptend.server.storage.db import Tx
from uptend.server.storage.tables import ReleaseRow
from uptend.server.tuf_repo.signed import decode

log = logging.getLogger(__name__)

UPLOAD_SUFFIX = ".upload"


def check_request(app: str, version: str, channel: str) -> str:
    """Refuse bad names before any byte is uploaded; the version's normal form."""
    check_name("app", app)
    normal = normalize(version)
    check_name("channel", channel)
    return normal


async def _refuse_equal(tx: Tx, app: str, version: str) -> None:
    """ConflictError if `app` has a release PEP 440 holds equal to `version`.

    Rows of any age: those published before versions were normalised may be spelled otherwise.
    """
    for row in await rows.listing(tx, app):
        if same_version(row.version, version):
            raise ConflictError(
                f"release {app} {row.version} already exists"
                + (f" ({version} is the same version)" if row.version != version else ""),
                hint="publish a new version number; releases are immutable",
            )


async def _refuse_below_floor(tx: Tx, app: str, version: str) -> None:
    """ConfigError if `version` is below the app's floor: it could never be installed."""
    floor = floor_of((await pin_rows.floors(tx, [app])).get(app, []))
    if below(version, floor):
        raise ConfigError(
            f"{app} {version} is below the floor {floor}: no host may install it",
            hint=f"publish a version above {floor}",
        )


async def refuse_duplicate(ctx: Context, app: str, version: str) -> None:
    async with ctx.db.transaction() as tx:
        await _refuse_equal(tx, app, version)


def remove_orphaned_uploads(upload_dir: Path) -> int:
    """Delete the uploads a killed server left half-written; how many went.

    Run before serving: one server process per data dir.
    """
    removed = 0
    for leftover in upload_dir.glob(f"*{UPLOAD_SUFFIX}"):
        leftover.unlink(missing_ok=True)
        removed += 1
    if removed:
        log.info("removed %d orphaned upload(s) from %s", removed, upload_dir)
    return removed


def describe(
    upload: Path,
    app: str,
    version: str,
    channel: str,
    fmt: ArchiveFormat,
    manifest: str | None = None,
    floor: bool = False,
) -> TargetCustom:
    """The signed `custom` of a release archive: what the server and `release sign` compute.

    Both sides build it here, so that a workstation's signature covers what the server checks.
    A .deb comes with its manifest (`debmeta.manifest_text`), checked against its control.
    """
    if fmt is ArchiveFormat.APT:
        return _describe_apt(upload, app, version, channel, manifest, floor)
    if fmt is ArchiveFormat.RPM:
        return _describe_rpm(upload, app, version, channel, manifest, floor)
    if fmt is ArchiveFormat.DEB:
        return _describe_deb(upload, app, version, channel, manifest, floor)
    if fmt is ArchiveFormat.FILE:
        return _describe_installer(upload, app, version, channel, manifest, floor)
    if manifest is not None:
        raise ConfigError("only a deb release carries its manifest beside the archive")
    info = archive.inspect(upload, fmt, max_bytes=MAX_UNPACKED_BYTES, max_files=MAX_FILES)
    parsed = parse_manifest(info.manifest, where="the release's uptend.toml")
    if parsed.deb is not None or parsed.rpm is not None:
        raise ConfigError(
            "the release's uptend.toml has a [deb] or [rpm] section, but it is not a package",
            hint="publish the .deb or .rpm itself, or drop the section from a bundle's manifest",
        )
    return TargetCustom(
        app=app,
        version=version,
        channel=channel,
        kind=InstallKind.AGENT if app == AGENT_APP else InstallKind.BUNDLE,
        format=fmt,
        unpacked_size=info.unpacked_size,
        files=info.files,
        floor=version if floor else None,
    )


def _describe_deb(
    upload: Path, app: str, version: str, channel: str, manifest: str | None, floor: bool
) -> TargetCustom:
    if manifest is None:
        raise ConfigError("a deb release needs its manifest", hint="publish with a current CLI")
    fields = debmeta.control_fields(upload)
    parsed = parse_manifest(manifest.encode(), where="the release's uptend.toml")
    debmeta.check(fields, parsed, app)
    _one_kind(parsed)
    try:
        size = int(fields.get("Installed-Size", "0")) * 1024
    except ValueError:
        size = 0
    return TargetCustom(
        app=app,
        version=version,
        channel=channel,
        kind=InstallKind.DEB,
        format=ArchiveFormat.DEB,
        unpacked_size=size,
        files=0,
        manifest=manifest,
        floor=version if floor else None,
    )


def _one_kind(parsed: Manifest, apt: bool = False) -> None:
    """A package release's manifest names its one package manager: never two sections.

    [apt] goes with [deb] (its bytes come from the host's apt repository), in apt releases only.
    """
    if sum(s is not None for s in (parsed.deb, parsed.rpm, parsed.installer)) != 1:
        raise ConfigError(
            "the release's uptend.toml has more than one of [deb], [rpm], [installer]",
            hint="keep only the section of the package this release is",
        )
    if (parsed.apt is not None) != apt:
        raise ConfigError(
            "an [apt] section belongs in an apt release only (publish its uptend.toml alone)",
            hint="drop [apt] to publish the package itself",
        )


def _describe_apt(
    upload: Path, app: str, version: str, channel: str, manifest: str | None, floor: bool
) -> TargetCustom:
    """The target is the manifest itself: the server decides the version, apt has the bytes."""
    if manifest is None or upload.read_bytes() != manifest.encode():
        raise ConfigError(
            "an apt release is its uptend.toml, sent as the manifest too",
            hint="publish the uptend.toml with [deb] and [apt] with a current CLI",
        )
    parsed = parse_manifest(manifest.encode(), where="the release's uptend.toml")
    if parsed.deb is None or parsed.apt is None:
        raise ConfigError("an apt release's uptend.toml needs [deb] and [apt] sections")
    _one_kind(parsed, apt=True)
    return TargetCustom(
        app=app,
        version=version,
        channel=channel,
        kind=InstallKind.APT,
        format=ArchiveFormat.APT,
        unpacked_size=0,
        files=0,
        manifest=manifest,
        floor=version if floor else None,
    )


def _describe_rpm(
    upload: Path, app: str, version: str, channel: str, manifest: str | None, floor: bool
) -> TargetCustom:
    if manifest is None:
        raise ConfigError("an rpm release needs its manifest", hint="publish with a current CLI")
    fields = rpmmeta.header(upload)
    parsed = parse_manifest(manifest.encode(), where="the release's uptend.toml")
    rpmmeta.check(fields, parsed, app)
    _one_kind(parsed)
    try:
        size = int(fields.get("Size", "0"))
    except ValueError:
        size = 0
    return TargetCustom(
        app=app,
        version=version,
        channel=channel,
        kind=InstallKind.RPM,
        format=ArchiveFormat.RPM,
        unpacked_size=size,
        files=0,
        manifest=manifest,
        floor=version if floor else None,
    )


def _describe_installer(
    upload: Path, app: str, version: str, channel: str, manifest: str | None, floor: bool
) -> TargetCustom:
    where = "the release's uptend.toml"
    parsed = None if manifest is None else parse_manifest(manifest.encode(), where=where)
    if parsed is None or parsed.installer is None:
        raise ConfigError("an installer release needs its manifest with an [installer] section")
    _one_kind(parsed)
    return TargetCustom(
        app=app,
        version=version,
        channel=channel,
        kind=InstallKind.COMMAND,
        format=ArchiveFormat.FILE,
        unpacked_size=upload.stat().st_size,
        files=1,
        manifest=manifest,
        floor=version if floor else None,
    )


async def publish(
    ctx: Context,
    actor: str,
    app: str,
    version: str,
    channel: str,
    fmt: ArchiveFormat,
    upload: Path,
    signed: bytes | None = None,
    *,
    critical: bool = False,
    floor: bool = False,
    manifest: str | None = None,
) -> Release:
    """Sign `upload` as target <app>/<version>/... and record it; `upload` is consumed.

    `signed`: the roles `uptend release sign` made on the publisher's workstation (required
    when the server's release keys are offline); checked before anything is published.

    `version` is in normal form (`check_request`). `floor`: no lower version of the app is
    installed any more; the server re-signs the lower releases with it (`TufRepo.add_target`).
    A version below the app's floor is refused.
    """
    try:
        roles = None if signed is None else decode(signed)
        custom = await anyio.to_thread.run_sync(
            describe, upload, app, version, channel, fmt, manifest, floor
        )
        name = target_path(app, version, fmt)
        async with ctx.publish_lock, ctx.db.transaction() as tx:
            await _refuse_equal(tx, app, version)  # again: a publish may have won meanwhile
            await _refuse_below_floor(tx, app, version)
            now = utcnow()
            row = ReleaseRow(
                app=app,
                version=version,
                channel=channel,
                target=name,
                length=upload.stat().st_size,
                sha256="",
                created_at=now,
                critical=critical,
                floor=floor,
            )
            await rows.add(tx, row)  # raises ConflictError before anything is signed
            target = await anyio.to_thread.run_sync(
                partial(ctx.repo.add_target, floor=version if floor else None),
                name,
                upload,
                custom.signed_form(),
                roles,
            )
            row.sha256 = target.hashes["sha256"]
            await rows.advance_head(tx, row)
            await rollouts.on_publish(tx, actor, app, channel, version, now)
            await generation.bump(tx)
            how = "signed offline" if roles is not None else "signed by the server"
            said = (", critical" if critical else "") + (", floor" if floor else "")
            detail = f"{app} {version} on {channel} ({how}{said})"
            audit.record(tx, now, actor, "release.publish", detail)
    except UptendError as e:  # a refused release is visible in the server's log
        log.warning("refused release %s %s: %s", app, version, e.message)
        raise
    finally:
        upload.unlink(missing_ok=True)
    return to_wire(row)


def to_wire(row: ReleaseRow) -> Release:
    return Release(
        app=row.app,
        version=row.version,
        channel=row.channel,
        target=row.target,
        length=row.length,
        sha256=row.sha256,
        created_at=row.created_at,
        critical=bool(row.critical),
        floor=bool(row.floor),
    )


async def listing(ctx: Context, app: str | None) -> list[Release]:
    async with ctx.db.transaction() as tx:
        return [to_wire(r) for r in await rows.listing(tx, app)]
