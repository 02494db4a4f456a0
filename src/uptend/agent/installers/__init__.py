"""Install kinds: one `Installer` per signed `custom.kind`, chosen by `for_kind`."""

from collections.abc import Callable
from pathlib import Path

from uptend.agent.installers.agent import AgentInstaller
from uptend.agent.installers.apt import AptInstaller
from uptend.agent.installers.base import (
    InstallBusyError,
    Installer,
    InstallFailedError,
    Say,
    Signed,
)
from uptend.agent.installers.bundle import BundleInstaller
from uptend.agent.installers.command import CommandInstaller
from uptend.agent.installers.deb import DebInstaller
from uptend.agent.installers.rpm import RpmInstaller
from uptend.agent.layout import Layout
from uptend.agent.selfupdate import AGENT_APP
from uptend.agent.supervisor import read_manifest
from uptend.errors import ConfigError
from uptend.protocol.manifest import MANIFEST_NAME, Manifest

KINDS: dict[str, Callable[[Layout, str], Installer]] = {
    BundleInstaller.kind: BundleInstaller,
    DebInstaller.kind: DebInstaller,
    RpmInstaller.kind: RpmInstaller,
    AptInstaller.kind: AptInstaller,
    CommandInstaller.kind: CommandInstaller,
    AgentInstaller.kind: AgentInstaller,
}


def supported() -> frozenset[str]:
    return frozenset(KINDS)


def for_kind(kind: str, layout: Layout, app: str) -> Installer:
    """The installer of `kind`; KeyError for a kind this agent does not know (decide refuses it)."""
    return KINDS[kind](layout, app)


_KINDS: dict[Path, tuple[tuple[int, int, int], str]] = {}  # manifest -> (its stat, kind)
MAX_KINDS = 512  # manifests remembered (a long-lived agent stages many versions)


def kind_of(layout: Layout, app: str, version: str | None) -> str:
    """The kind of a staged version, from its signed manifest: [deb], [rpm], [apt] are packages.

    A staged version never changes, so its kind is read once (the driver asks at every
    tick and check-in): remembered by the manifest's path, checked against its inode, size
    and mtime, so that a version dropped and staged again is read again.
    """
    if app == AGENT_APP:
        return AgentInstaller.kind  # the agent itself, whatever is staged
    if version is None:
        return BundleInstaller.kind
    where = layout.version_dir(app, version)
    path = where / MANIFEST_NAME
    try:
        st = path.stat()
    except OSError:
        return BundleInstaller.kind  # nothing staged there: health() reports it
    seen = (st.st_ino, st.st_size, st.st_mtime_ns)
    known = _KINDS.get(path)
    if known is not None and known[0] == seen:
        return known[1]
    try:
        kind = _kind(read_manifest(where))
    except ConfigError:
        return BundleInstaller.kind  # health() reports the broken manifest
    if len(_KINDS) >= MAX_KINDS:
        _KINDS.clear()
    _KINDS[path] = (seen, kind)
    return kind


def _kind(manifest: Manifest) -> str:
    if manifest.installer is not None:
        return CommandInstaller.kind
    if manifest.apt is not None:
        return AptInstaller.kind  # a [deb] whose bytes came from the host's apt repository
    if manifest.rpm is not None:
        return RpmInstaller.kind
    return DebInstaller.kind if manifest.deb is not None else BundleInstaller.kind


def for_version(layout: Layout, app: str, version: str | None) -> Installer:
    """The installer of the kind `version` was staged as (bundle for None: no version)."""
    return for_kind(kind_of(layout, app, version), layout, app)


__all__ = [
    "InstallBusyError",
    "InstallFailedError",
    "Installer",
    "Say",
    "Signed",
    "for_kind",
    "for_version",
    "supported",
]
