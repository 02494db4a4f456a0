"""Install kinds: one `Installer` per signed `custom.kind`, chosen by `for_kind`."""

from collections.abc import Callable

from uptend.agent.installers.agent import AgentInstaller
from uptend.agent.installers.base import Installer, Signed
from uptend.agent.installers.bundle import BundleInstaller
from uptend.agent.layout import Layout

KINDS: dict[str, Callable[[Layout, str], Installer]] = {BundleInstaller.kind: BundleInstaller}
KINDS[AgentInstaller.kind] = AgentInstaller


def supported() -> frozenset[str]:
    return frozenset(KINDS)


def for_kind(kind: str, layout: Layout, app: str) -> Installer:
    """The installer of `kind`; KeyError for a kind this agent does not know (decide refuses it)."""
    return KINDS[kind](layout, app)


__all__ = ["Installer", "Signed", "for_kind", "supported"]
