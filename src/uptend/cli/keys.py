"""`uptend keys`: show, rotate, renew and export the TUF signing keys of a server's data dir.

These commands work on the data dir itself (like `server init`), not over HTTP: they need
the private keys, and a running server picks up what they change at its next publish or
re-signing check. Keys kept offline are passed with `--keys DIR`.
"""

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from uptend.cli._output import console, err_console, print_json

if TYPE_CHECKING:  # imported when a command runs: `uptend --help` stays light
    from uptend.server.tuf_repo import TufRepo

app = typer.Typer(
    add_completion=False,  # the root command owns shell completion (it has none)
    help="Show, rotate, renew and export the TUF signing keys of a server.",
    epilog="Example: uptend keys show /var/lib/uptend",
)

DataDir = Annotated[Path, typer.Argument(help="the server's data dir (`uptend server init`)")]
KeysOpt = Annotated[
    Path | None,
    typer.Option("--keys", help="directory holding the keys kept offline (export-targets)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]


def _open(data_dir: Path, keys: Path | None) -> "TufRepo":
    from uptend.server.services.setup import load_settings
    from uptend.server.tuf_repo import TufRepo

    settings = load_settings(data_dir, None)
    offline = (keys,) if keys is not None else ()
    return TufRepo.open(settings.tuf_dir, expiry=settings.expiry, keys=offline)


@app.command(epilog="Example: uptend keys show /var/lib/uptend --json")
def show(data_dir: DataDir, keys: KeysOpt = None, json_out: JsonOpt = False) -> None:
    """Each key: its ids, where it is, the version and expiry of the metadata it signs."""
    repo = _open(data_dir, keys)
    now = datetime.now(UTC)
    status = repo.key_status(now)
    retired = [str(p) for p in repo.keyring.retired()]
    if json_out:
        print_json(
            {
                "offline": repo.offline,
                "keys": [
                    {
                        "key": s.key,
                        "keyids": s.keyids,
                        "where": s.where,
                        "version": s.version,
                        "expires": s.expires.isoformat(),
                        "warning": s.warning,
                    }
                    for s in status
                ],
                "retired": retired,
            }
        )
        return
    table = Table("key", "key id", "where", "version", "expires")
    for s in status:
        ids = ", ".join(k[:16] for k in s.keyids)
        table.add_row(s.key, ids, s.where, str(s.version), s.expires.isoformat(timespec="minutes"))
    console.print(table)
    mode = "offline: releases are signed with `uptend release sign`" if repo.offline else "online"
    console.print(f"signing mode: {mode}", markup=False)
    for path in retired:
        console.print(f"retired key (destroy once every agent has moved on): {escape(path)}")
    for s in status:
        if s.warning:
            err_console.print(f"[bold yellow]warning:[/] {escape(s.warning)}")


@app.command(epilog="Example: uptend keys rotate timestamp /var/lib/uptend")
def rotate(
    key: Annotated[str, typer.Argument(help="root, targets, snapshot, timestamp or releases")],
    data_dir: DataDir,
    keys: KeysOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Replace KEY with a new one; enrolled agents follow through the signed root chain.

    Keys listed by root need the root key too; the releases key needs the targets key. The
    old key file is kept under retired/ beside it.
    """
    done = _open(data_dir, keys).rotate(key, datetime.now(UTC))
    if json_out:
        print_json(
            {
                "key": done.key,
                "old_keyid": done.old_keyid,
                "new_keyid": done.new_keyid,
                "root_version": done.root_version,
            }
        )
        return
    console.print(
        f"[green]rotated[/] the {done.key} key: {done.old_keyid[:16]} -> {done.new_keyid[:16]} "
        f"(root version {done.root_version}; the old key is kept under retired/)"
    )


@app.command(epilog="Example: uptend keys renew /var/lib/uptend --keys /media/usb/uptend-keys")
def renew(data_dir: DataDir, keys: KeysOpt = None, json_out: JsonOpt = False) -> None:
    """Re-sign every role with less than half its life left, root included.

    A server with every key does this by itself; in the offline mode, run it with --keys
    before the warnings of `keys show` turn into expired metadata.
    """
    repo = _open(data_dir, keys)
    resigned = repo.refresh_expiring(datetime.now(UTC))
    if json_out:
        print_json({"resigned": resigned})
        return
    console.print("re-signed what was due" if resigned else "nothing was due", markup=False)


@app.command(
    "export-targets",
    epilog="Example: uptend keys export-targets /var/lib/uptend /media/usb/uptend-keys",
)
def export_targets(
    data_dir: DataDir,
    dest: Annotated[Path, typer.Argument(help="new directory on the publisher's side")],
    json_out: JsonOpt = False,
) -> None:
    """Move the root, targets and releases keys off the server into DEST: the offline mode.

    The server then holds only the snapshot and timestamp keys: it refuses a release that
    was not signed with `uptend release sign` on the side that holds DEST.
    """
    moved = _open(data_dir, None).export_offline(dest, datetime.now(UTC))
    if json_out:
        print_json({"moved": [str(p) for p in moved]})
        return
    for path in moved:
        console.print(f"[green]moved[/] {escape(str(path))}")
    console.print(
        "the server now holds only the snapshot and timestamp keys: sign releases with "
        f"`uptend release sign ... --keys {escape(str(dest))}`, keep DEST offline and backed up"
    )
