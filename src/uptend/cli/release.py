"""`uptend release`: publish and list signed releases."""

import json
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table
from rich.text import Text

from uptend import archive, debmeta, rpmmeta
from uptend.cli import release_agent
from uptend.cli._client import Admin, ServerOpt, TokenOpt, public_metadata
from uptend.cli._output import console, err_console, literal, print_json
from uptend.errors import ConfigError
from uptend.protocol.limits import MAX_SENT_MANIFEST
from uptend.protocol.manifest import MANIFEST_NAME, parse_manifest
from uptend.protocol.names import check_name
from uptend.protocol.targets import ArchiveFormat, target_path
from uptend.protocol.versions import normalize

app = typer.Typer(
    add_completion=False,  # the root command owns shell completion (it has none)
    help="Publish and list releases (each one a signed TUF target).",
    epilog="Example: uptend release publish demo 2.0 ./build",
)

SIGNED_FILE = "uptend-signed.json"  # what `release sign` writes beside the archive
CHUNK = 1 << 20
LOCAL_MAX_BYTES = 8 << 30


def _check_local(path: Path) -> tuple[Path, ArchiveFormat, Path | None]:
    """(archive to upload, its format, temp dir to remove) after local checks."""
    if path.suffix == ".deb" and path.is_file():
        return path, ArchiveFormat.DEB, None  # checked by debmeta.manifest_text
    if path.suffix == ".toml" and path.is_file():
        if parse_manifest(path.read_bytes(), where=str(path)).apt is None:
            raise ConfigError(
                f"{path} alone is a release only with an [apt] section (the repository mode)",
                hint="publish the directory that holds it, or add [apt] and [deb]",
            )
        return path, ArchiveFormat.APT, None  # the bytes come from the host's apt repository
    if path.suffix == ".rpm" and path.is_file():
        return path, ArchiveFormat.RPM, None  # checked by rpmmeta.manifest_text
    if path.is_file() and debmeta.installer_sidecar(path):
        return path, ArchiveFormat.FILE, None  # the vendor's installer, run by its command
    if path.is_dir():
        manifest = path / MANIFEST_NAME
        try:
            parse_manifest(manifest.read_bytes(), where=str(manifest))
        except FileNotFoundError:
            raise ConfigError(
                f"{path} has no {MANIFEST_NAME} at its root",
                hint='add one with at least [app] command = ["prog", "arg"]; see README.md',
            ) from None
        except PermissionError:
            raise ConfigError(f"cannot read {manifest}", hint="check its permissions") from None
        tmp = Path(tempfile.mkdtemp(prefix="uptend-publish-"))
        bundle = tmp / "release.tar.gz"
        with err_console.status(f"packing {path}"):
            try:
                archive.pack_dir(path, bundle)
            except OSError as e:
                raise ConfigError(f"cannot read {e.filename}: {e.strerror}") from None
        return bundle, ArchiveFormat.TAR_GZ, tmp
    if not path.exists():
        raise ConfigError(f"{path} does not exist", hint="give a directory, .tar.gz or .zip")
    fmt = archive.detect_format(path)
    try:
        info = archive.inspect(path, fmt, max_bytes=LOCAL_MAX_BYTES, max_files=200_000)
    except PermissionError:
        raise ConfigError(f"cannot read {path}", hint="check its permissions") from None
    parse_manifest(info.manifest, where=f"{path}:{MANIFEST_NAME}")
    return path, fmt, None


def _package_manifest(bundle: Path, fmt: ArchiveFormat) -> str | None:
    """The uptend.toml a package or installer release is signed with (None: a bundle)."""
    if fmt is ArchiveFormat.DEB:
        return _sendable(debmeta.manifest_text(bundle))
    if fmt is ArchiveFormat.RPM:
        return _sendable(rpmmeta.manifest_text(bundle))
    if fmt is ArchiveFormat.APT:
        return _sendable(bundle.read_text("utf-8"))
    if fmt is ArchiveFormat.FILE:
        return _sendable((bundle.parent / MANIFEST_NAME).read_text("utf-8"))
    return None


def upload_release(
    admin: Admin,
    name: str,
    version: str,
    path: Path,
    channel: str,
    *,
    show_progress: bool,
    signed: bytes = b"",
    critical: bool = False,
    floor: bool = False,
) -> dict[str, Any]:
    """Check PATH locally, pack it if it is a directory, upload it with a progress bar.

    `signed`: the roles `release sign` made, sent ahead of the archive in the same body.
    """
    bundle, fmt, tmp = _check_local(path)
    try:
        size = len(signed) + bundle.stat().st_size
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=err_console,
            transient=True,
            disable=not show_progress or size < 4 * CHUNK,
        ) as progress:
            task = progress.add_task(f"uploading {name} {version}", total=size)

            def chunks() -> Iterator[bytes]:
                if signed:
                    yield signed
                with bundle.open("rb") as f:
                    while data := f.read(CHUNK):
                        progress.advance(task, len(data))
                        yield data

            params = {"app": name, "version": version, "channel": channel, "format": fmt.value}
            if signed:
                params["signed"] = str(len(signed))
            if critical:
                params["critical"] = "true"
            if floor:
                params["floor"] = "true"
            if (manifest := _package_manifest(bundle, fmt)) is not None:
                params["manifest"] = manifest
            release = admin.publish(params, chunks(), size).model_dump(mode="json")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return release


@app.command(
    epilog="Example: uptend release publish demo 2.0 ./build --channel stable\n\n"
    "A critical fix, installed at once, windows and freezes notwithstanding:"
    " uptend release publish demo 2.0.1 ./build --critical\n\n"
    "A fix no host may go back from (nothing below 2.0.2 installs any more):"
    " uptend release publish demo 2.0.2 ./build --floor"
)
def publish(
    name: Annotated[str, typer.Argument(metavar="APP", help="app name")],
    version: Annotated[str, typer.Argument(help="PEP 440 version, e.g. 1.2.0")],
    path: Annotated[
        Path,
        typer.Argument(
            help="directory, .tar.gz or .zip with uptend.toml, a .deb, an .rpm, an apt release's"
            " uptend.toml; or `release sign`'s"
        ),
    ],
    server: ServerOpt = "",
    token: TokenOpt = "",
    channel: Annotated[str, typer.Option(help="channel the release goes to")] = "stable",
    critical: Annotated[
        bool,
        typer.Option(
            "--critical", help="install at once: overrides maintenance windows and freezes"
        ),
    ] = False,
    floor: Annotated[
        bool,
        typer.Option(
            "--floor",
            help="no lower version of APP may be installed any more, whatever a pin says"
            " (signed: agents refuse them too)",
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """Publish PATH as release VERSION of APP, signed by the server's releases key.

    When PATH is the directory `uptend release sign` wrote, the release goes up with the
    signature made there (the only way to publish once the keys are offline); its channel
    is the one it was signed for.
    """
    check_name("app", name)
    version = normalize(version)  # what the server stores and signs
    check_name("channel", channel)
    signed = b""
    if path.is_dir() and (path / SIGNED_FILE).is_file():
        path, channel, signed = _signed_release(path, name, version)
    release = upload_release(
        Admin(server, token),
        name,
        version,
        path,
        channel,
        show_progress=not json_out,
        signed=signed,
        critical=critical,
        floor=floor,
    )
    if json_out:
        print_json(release)
    else:
        console.print(
            Text.assemble(
                ("published", "green"),
                " ",
                literal(f"{release['app']} {release['version']} on {release['channel']}"),
                (" (critical)", "bold red") if critical else "",
                (" (floor)", "bold") if floor else "",
                " ",
                literal(f"({release['length']} bytes, sha256 {release['sha256'][:12]}…)"),
            )
        )


def _signed_release(out: Path, name: str, version: str) -> tuple[Path, str, bytes]:
    """(archive, channel, signed document) of a directory `release sign` wrote."""
    data = (out / SIGNED_FILE).read_bytes()
    try:
        release = json.loads(data)["release"]
        signed_as = (str(release["app"]), str(release["version"]))
        archive_path, channel = out / Path(str(release["file"])).name, str(release["channel"])
    except (ValueError, KeyError, TypeError):
        raise ConfigError(
            f"{out / SIGNED_FILE} is not what `uptend release sign` writes",
            hint="sign the release again",
        ) from None
    if signed_as != (name, version):
        raise ConfigError(
            f"{out} holds {signed_as[0]} {signed_as[1]}, not {name} {version}",
            hint="publish it under the app and version it was signed for",
        )
    return archive_path, channel, data


@app.command(
    epilog="Example: uptend release sign demo 2.0 ./build --keys ~/uptend-keys --out ./signed"
)
def sign(
    name: Annotated[str, typer.Argument(metavar="APP", help="app name")],
    version: Annotated[str, typer.Argument(help="PEP 440 version, e.g. 1.2.0")],
    path: Annotated[
        Path,
        typer.Argument(help="directory, .tar.gz or .zip with uptend.toml, a .deb, an .rpm"),
    ],
    keys: Annotated[Path, typer.Option("--keys", help="the offline keys (export-targets)")],
    out: Annotated[Path, typer.Option("--out", help="new directory for the signed release")],
    server: ServerOpt = "",
    channel: Annotated[str, typer.Option(help="channel the release goes to")] = "stable",
    json_out: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """Sign release VERSION of APP with the offline keys, ready for `release publish OUT`.

    Reads the app's published role from the server's public /tuf/metadata/ (no token),
    checks that these keys signed it, and signs its next version with the new archive.
    """
    from tuf.api.metadata import TargetFile

    from uptend.durable import write_atomically
    from uptend.server.services.releases import describe
    from uptend.server.tuf_repo import Expiry
    from uptend.server.tuf_repo.files import load_key
    from uptend.server.tuf_repo.signed import sign_release

    check_name("app", name)
    version = normalize(version)  # what the server stores and signs
    check_name("channel", channel)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} exists and is not empty", hint="give a new directory to --out")
    signers = {
        n: load_key(keys / f"{n}.pem")
        for n in ("releases", "targets")
        if (keys / f"{n}.pem").is_file()
    }
    if "releases" not in signers:
        raise ConfigError(f"{keys} holds no releases.pem", hint="pass the dir export-targets made")
    bundle, fmt, tmp = _check_local(path)
    target_name = target_path(name, version, fmt)
    try:
        manifest = _package_manifest(bundle, fmt)
        out.mkdir(parents=True, exist_ok=True)
        archive_path = out / target_name.rsplit("/", 1)[1]
        shutil.copyfile(bundle, archive_path)
        if manifest is not None:  # beside the package, as `publish OUT` reads it: the same text
            (out / MANIFEST_NAME).write_text(manifest, "utf-8")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    custom = describe(archive_path, name, version, channel, fmt, manifest)
    target = TargetFile.from_file(target_name, str(archive_path), ["sha256"])
    target.unrecognized_fields["custom"] = custom.signed_form()
    now = datetime.now(UTC)
    roles = sign_release(public_metadata(server), signers, target, now, Expiry().of("targets"))
    release = {"app": name, "version": version, "channel": channel, "format": fmt.value,
               "file": archive_path.name}  # fmt: skip
    doc = {"release": release, "roles": {n: md.to_dict() for n, md in roles.items()}}
    write_atomically(out / SIGNED_FILE, json.dumps(doc).encode())
    if json_out:
        print_json({**release, "out": str(out), "roles": sorted(roles)})
        return
    console.print(
        f"[green]signed[/] {name} {version} for {channel} into {escape(str(out))}: "
        f"publish it with `uptend release publish {name} {version} {escape(str(out))}`"
    )


@app.command("list", epilog="Example: uptend release list demo --json")
def list_releases(
    name: Annotated[str | None, typer.Argument(metavar="[APP]", help="only this app")] = None,
    server: ServerOpt = "",
    token: TokenOpt = "",
    json_out: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """List published releases, oldest first per app."""
    releases = [r.model_dump(mode="json") for r in Admin(server, token).releases(name)]
    if json_out:
        print_json(releases)
        return
    table = Table("app", "version", "channel", "bytes", "sha256", "published")
    for r in releases:
        table.add_row(
            literal(r["app"]),
            literal(
                r["version"]
                + (" (critical)" if r["critical"] else "")
                + (" (floor)" if r.get("floor") else "")
            ),
            literal(r["channel"]),
            literal(r["length"]),
            literal(r["sha256"][:12]),
            literal(r["created_at"][:19]),
        )
    console.print(table)


def _sendable(manifest: str) -> str:
    """A package's uptend.toml as the publish sends it: ASCII, at most MAX_SENT_MANIFEST."""
    if len(manifest) > MAX_SENT_MANIFEST or not manifest.isascii():
        raise ConfigError(
            f"the release's {MANIFEST_NAME} is {len(manifest)} characters or not ASCII",
            hint=f"keep it ASCII and under {MAX_SENT_MANIFEST} characters (comments can go)",
        )
    return manifest


release_agent.register(app)  # `publish-agent`, in its own module
