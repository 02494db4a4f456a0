"""Fetching a signed config document, in the worker child (it needs tuf and urllib3).

The path comes from the directive; python-tuf must find it in the app's signed role, with
the app and version in its `custom`, and no longer than a config can be; the bytes must then
match the signed length and hashes (`download_target`), or they are deleted. What passes is
kept as `configs/<N>` in the app's dir, for the agent to write into `UPTEND_CONFIG_FILE`.
"""

from uptend.agent import files
from uptend.agent.download import download_target, target_url
from uptend.agent.layout import Layout
from uptend.agent.tufopen import TUF_LOCK, session
from uptend.agent.worker import Context
from uptend.errors import VerificationError
from uptend.protocol.limits import MAX_CONFIG_BYTES


def fetch(
    layout: Layout,
    metadata_url: str,
    targets_url: str,
    app: str,
    version: int,
    path: str,
    job: Context,
) -> str:
    with TUF_LOCK:
        tuf = session(layout, metadata_url)
        try:
            try:
                info = tuf.target(path)
            except VerificationError as e:
                raise VerificationError(
                    f"config {version} of {app} is not a signed target ({path})",
                    hint="the server directed a config the release key never signed",
                ) from e
        finally:
            tuf.close()
    custom = info.custom if isinstance(info.custom, dict) else {}
    if custom.get("app") != app or custom.get("config") != version:
        raise VerificationError(f"signed target {path} is not config {version} of {app}")
    if info.length > MAX_CONFIG_BYTES:
        raise VerificationError(f"signed config {path} is {info.length} bytes, over the limit")
    dest = layout.configs(app) / str(version)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f"{dest.name}.part")
    partial.unlink(missing_ok=True)  # small: never resumed, always fetched whole
    download_target(
        info,
        target_url(targets_url, info),
        partial,
        progress=job.progress,
        ca_file=layout.ca_file(),
    )
    partial.replace(dest)
    files.fsync_dir(dest.parent)
    return "fetched"
