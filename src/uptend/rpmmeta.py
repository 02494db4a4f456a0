"""What an .rpm says about itself (`rpm -qp`), and the manifest an rpm release is signed with.

The rpm twin of `debmeta`, shared the same way by the publisher, the server and the agent's
rpm installer (stdlib only). An rpm has no free control fields, so its manifest is the
sidecar `uptend.toml` beside the .rpm; its `[rpm]` section defaults to the header's NAME
and EVR.
"""

import subprocess
from pathlib import Path

from uptend.errors import ConfigError
from uptend.protocol.manifest import MANIFEST_NAME, Manifest, parse_manifest

# NAME, [epoch:]version-release, installed bytes: one per line, never user-chosen text
_QUERY = "%{NAME}\\n%{EVR}\\n%{SIZE}\\n"
_MAGIC = b"\xed\xab\xee\xdb"  # an rpm's lead


def _is_rpm(path: Path) -> bool:
    """Whether `path` starts with an rpm lead (`rpm -qp` reads any other file as a list)."""
    try:
        with path.open("rb") as f:
            return f.read(4) == _MAGIC
    except OSError:
        return False


def header(rpm: Path) -> dict[str, str]:
    """`Package`, `Version` (EVR) and `Size` of `rpm`; ConfigError when rpm cannot read it."""
    if not _is_rpm(rpm):
        raise ConfigError(
            f"{rpm} is not an rpm package (no rpm lead)", hint="build it with rpmbuild"
        )
    argv = ["rpm", "-qp", "--nosignature", "--nodigest", "--qf", _QUERY, str(rpm)]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    except FileNotFoundError:
        raise ConfigError(
            "rpm is not installed", hint="install rpm to publish or install .rpm releases"
        ) from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"rpm took over 60 s to read {rpm}") from None
    lines = done.stdout.decode("utf-8", "replace").splitlines()
    if done.returncode != 0 or len(lines) != 3:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ConfigError(
            f"{rpm} is not an rpm package: {said[-1] if said else 'rpm read nothing'}",
            hint="build it with rpmbuild",
        )
    return {"Package": lines[0], "Version": lines[1], "Size": lines[2]}


def manifest_text(rpm: Path) -> str:
    """The uptend.toml to publish `rpm` with: the sidecar's, [rpm] added from the header."""
    fields = header(rpm)
    sidecar = rpm.parent / MANIFEST_NAME
    if not sidecar.is_file():
        raise ConfigError(
            f"{rpm} has no {MANIFEST_NAME} beside it",
            hint=f"put an {MANIFEST_NAME} with [app] command = [...] next to the .rpm",
        )
    text = sidecar.read_text("utf-8")
    if parse_manifest(text.encode(), where=str(sidecar)).rpm is None:
        text += f'\n[rpm]\npackage = "{fields["Package"]}"\nversion = "{fields["Version"]}"\n'
    check(fields, parse_manifest(text.encode(), where=str(sidecar)), str(rpm))
    return text


def check(fields: dict[str, str], manifest: Manifest, where: str) -> None:
    """ConfigError unless the manifest's [rpm] names exactly this package and version."""
    declared = manifest.rpm
    if declared is None:
        raise ConfigError(f"the manifest of {where} has no [rpm] section")
    found = (fields.get("Package", ""), fields.get("Version", ""))
    if (declared.package, declared.version) != found:
        raise ConfigError(
            f"{where} is package {found[0]} {found[1]}, but its manifest declares "
            f"{declared.package} {declared.version}",
            hint="make [rpm] package and version in uptend.toml match the rpm header",
        )
