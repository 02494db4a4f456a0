"""Install kinds: one `Installer` per signed `custom.kind`, chosen by `for_kind`."""

from collections.abc import Callable

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


def kind_of(layout: Layout, app: str, version: str | None) -> str:
    """The kind of a staged version, from its signed manifest: [deb], [rpm], [apt] are packages."""
    if app == AGENT_APP:
        return AgentInstaller.kind  # the agent itself, whatever is staged
    if version is None:
        return BundleInstaller.kind
    try:
        manifest = read_manifest(layout.version_dir(app, version))
    except ConfigError:
        return BundleInstaller.kind  # health() reports the broken manifest
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
