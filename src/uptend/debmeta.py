"""What a .deb says about itself (`dpkg-deb -f`), and the manifest a deb release is signed with.

Shared by the publisher (`release publish`, `release sign`), the server (which checks the
manifest against the package before signing) and the agent's deb installer (which checks the
package name again before dpkg runs). Stdlib only: the resident agent imports it.

The manifest of a deb release is a sidecar `uptend.toml` beside the .deb, or, without one,
defaults from the control fields: the command from `X-Uptend-Command` (split like a shell
line), the `[deb]` section from `Package` and `Version`.
"""

import shlex
import subprocess
from pathlib import Path

from uptend.errors import ConfigError
from uptend.protocol.manifest import MANIFEST_NAME, Manifest, parse_manifest

COMMAND_FIELD = "X-Uptend-Command"


def control_fields(deb: Path) -> dict[str, str]:
    """The control fields of `deb`; ConfigError when it is not a .deb dpkg-deb can read."""
    try:
        done = subprocess.run(
            ["dpkg-deb", "--field", str(deb)], capture_output=True, timeout=60, check=False
        )
    except FileNotFoundError:
        raise ConfigError(
            "dpkg-deb is not installed", hint="install dpkg to publish or install .deb releases"
        ) from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"dpkg-deb took over 60 s to read {deb}") from None
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip()
        raise ConfigError(f"{deb} is not a Debian package: {said}", hint="build it with dpkg-deb")
    fields: dict[str, str] = {}
    key = ""
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        if line[:1] in (" ", "\t") and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def _deb_table(fields: dict[str, str]) -> str:
    package, version = fields.get("Package", ""), fields.get("Version", "")
    return f'\n[deb]\npackage = "{package}"\nversion = "{version}"\n'


def manifest_text(deb: Path) -> str:
    """The uptend.toml to publish `deb` with: the sidecar's, or defaults; checked either way."""
    fields = control_fields(deb)
    sidecar = deb.parent / MANIFEST_NAME
    if sidecar.is_file():
        text = sidecar.read_text("utf-8")
        if parse_manifest(text.encode(), where=str(sidecar)).deb is None:
            text += _deb_table(fields)
    elif COMMAND_FIELD in fields:
        command = shlex.split(fields[COMMAND_FIELD])
        text = f"[app]\ncommand = {_toml_list(command)}\n" + _deb_table(fields)
    else:
        raise ConfigError(
            f"{deb} has no {MANIFEST_NAME} beside it and no {COMMAND_FIELD} control field",
            hint=f"put an {MANIFEST_NAME} with [app] command = [...] next to the .deb",
        )
    check(fields, parse_manifest(text.encode(), where=str(sidecar)), str(deb))
    return text


def installer_sidecar(path: Path) -> bool:
    """Whether `path` is a command release: an installer with an [installer] uptend.toml."""
    if path.name.endswith((".tar.gz", ".tgz", ".zip", ".deb", ".rpm")):
        return False
    sidecar = path.parent / MANIFEST_NAME
    if not sidecar.is_file():
        return False
    return parse_manifest(sidecar.read_bytes(), where=str(sidecar)).installer is not None


def check(fields: dict[str, str], manifest: Manifest, where: str) -> None:
    """ConfigError unless the manifest's [deb] names exactly this package and version."""
    declared = manifest.deb
    if declared is None:
        raise ConfigError(f"the manifest of {where} has no [deb] section")
    found = (fields.get("Package", ""), fields.get("Version", ""))
    if (declared.package, declared.version) != found:
        raise ConfigError(
            f"{where} is package {found[0]} {found[1]}, but its manifest declares "
            f"{declared.package} {declared.version}",
            hint="make [deb] package and version in uptend.toml match the control fields",
        )


def _toml_list(items: list[str]) -> str:
    quoted = ('"' + i.replace("\\", "\\\\").replace('"', '\\"') + '"' for i in items)
    return "[" + ", ".join(quoted) + "]"
