"""`uptend release`: publish and list signed releases."""

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from uptend import archive
from uptend.cli._client import Admin, ServerOpt, TokenOpt
from uptend.cli._output import console, err_console, print_json
from uptend.errors import ConfigError
from uptend.protocol.manifest import MANIFEST_NAME, parse_manifest
from uptend.protocol.names import check_name
from uptend.protocol.targets import ArchiveFormat
from uptend.protocol.versions import parse_version

app = typer.Typer(
    add_completion=False,  # the root command owns shell completion (it has none)
    help="Publish and list releases (each one a signed TUF target).",
    epilog="Example: uptend release publish demo 2.0 ./build",
)

CHUNK = 1 << 20
LOCAL_MAX_BYTES = 8 << 30


def _check_local(path: Path) -> tuple[Path, ArchiveFormat, Path | None]:
    """(archive to upload, its format, temp dir to remove) after local checks."""
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


def upload_release(
    admin: Admin,
    name: str,
    version: str,
    path: Path,
    channel: str,
    *,
    show_progress: bool,
    critical: bool = False,
) -> dict[str, Any]:
    """Check PATH locally, pack it if it is a directory, upload it with a progress bar."""
    bundle, fmt, tmp = _check_local(path)
    try:
        size = bundle.stat().st_size
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
                with bundle.open("rb") as f:
                    while data := f.read(CHUNK):
                        progress.advance(task, len(data))
                        yield data

            params = {"app": name, "version": version, "channel": channel, "format": fmt.value}
            if critical:
                params["critical"] = "true"
            release = admin.publish(params, chunks(), size).model_dump(mode="json")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return release


@app.command(
    epilog="Example: uptend release publish demo 2.0 ./build --channel stable\n\n"
    "A critical fix, installed at once, windows and freezes notwithstanding:"
    " uptend release publish demo 2.0.1 ./build --critical"
)
def publish(
    name: Annotated[str, typer.Argument(metavar="APP", help="app name")],
    version: Annotated[str, typer.Argument(help="PEP 440 version, e.g. 1.2.0")],
    path: Annotated[Path, typer.Argument(help="directory, .tar.gz or .zip with uptend.toml")],
    server: ServerOpt = "",
    token: TokenOpt = "",
    channel: Annotated[str, typer.Option(help="channel the release goes to")] = "stable",
    critical: Annotated[
        bool,
        typer.Option(
            "--critical", help="install at once: overrides maintenance windows and freezes"
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """Publish PATH as release VERSION of APP: signed by the server's targets key."""
    check_name("app", name)
    parse_version(version)
    check_name("channel", channel)
    release = upload_release(
        Admin(server, token),
        name,
        version,
        path,
        channel,
        show_progress=not json_out,
        critical=critical,
    )
    if json_out:
        print_json(release)
    else:
        console.print(
            f"[green]published[/] {name} {version} on {channel}"
            f"{' [bold red](critical)[/]' if critical else ''} "
            f"({release['length']} bytes, sha256 {release['sha256'][:12]}…)"
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
            r["app"],
            r["version"] + (" (critical)" if r["critical"] else ""),
            r["channel"],
            str(r["length"]),
            r["sha256"][:12],
            r["created_at"][:19],
        )
    console.print(table)
