"""The signed record kept beside a download, and the resumable fetch into staging.

Worker-child code (it needs tuf and urllib3). The record lets a restarted agent resume
without asking the metadata again (the agent writes it as the look-up gave it); the artifact
is fetched into `<name>.part` (resumed with a Range request from what is there), verified,
then renamed into place: a staged artifact is whole and verified, or absent.
"""

import json
from pathlib import Path
from typing import Any

from tuf.api.metadata import TargetFile

from uptend.agent import files
from uptend.agent.crashpoints import crashpoint
from uptend.agent.download import download_target, target_url
from uptend.agent.installers import Signed
from uptend.agent.layout import Layout
from uptend.agent.observe import Span, no_span
from uptend.agent.worker import Context
from uptend.errors import VerificationError
from uptend.protocol.targets import TargetCustom


def record(signed: Signed) -> dict[str, Any]:
    """What the signed metadata said about a target, to keep beside its download."""
    return {
        "name": signed.name,
        "target": signed.info.to_dict(),
        "custom": signed.custom.model_dump(mode="json"),
    }


def load(layout: Layout, app: str, version: str) -> Signed | None:
    try:
        kept = json.loads(layout.target_record(app, version).read_text())
        info = TargetFile.from_dict(kept["target"], kept["name"])
        return Signed(kept["name"], info, TargetCustom.model_validate(kept["custom"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def signed(layout: Layout, app: str, version: str) -> Signed:
    """The kept record of `app` `version`; VerificationError when it is gone or damaged."""
    found = load(layout, app, version)
    if found is None or (found.custom.app, found.custom.version) != (app, version):
        raise VerificationError(f"the signed record of {app} {version} is gone")
    return found


def artifact(layout: Layout, signed: Signed) -> Path:
    return layout.staging(signed.custom.app) / Path(signed.name).name


def fetch(
    layout: Layout, signed: Signed, targets_url: str, job: Context, span: Span = no_span
) -> None:
    """Fetch the artifact of `signed` into staging (a no-op when it is there and verifies)."""
    final = artifact(layout, signed)
    if final.exists():
        with span("verify"), final.open("rb") as f:
            signed.info.verify_length_and_hashes(f)
        return
    partial = final.with_name(final.name + ".part")
    reached = False

    def progress(done: int, total: int) -> None:
        nonlocal reached
        job.progress(done, total)
        if not reached and done > 0:
            reached = True
            crashpoint("download:mid")
        job.check()  # stop between chunks when the agent stops: the bytes so far are kept

    job.progress(partial.stat().st_size if partial.exists() else 0, signed.info.length)
    try:
        url = target_url(targets_url, signed.info)
        download_target(
            signed.info, url, partial, progress=progress, span=span, ca_file=layout.ca_file()
        )
    except OSError:
        partial.unlink(missing_ok=True)  # at once: it may be what fills the disk (F40)
        raise
    partial.replace(final)
    files.fsync_dir(final.parent)
