"""The seam between the update machine and what an install kind does on the host.

The driver runs the phases; an installer does the kind's work in each: `stage` turns a
verified artifact into a complete, immutable version (atomically: it appears whole or not
at all), `activate` makes one the installed version, `deactivate` leaves none installed,
`installed` says which one is, `cleanup` drops what is neither installed nor kept. Every
method is idempotent: after kill -9 the driver repeats the interrupted one.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from uptend.agent.observe import Span, no_span
from uptend.agent.worker import Context
from uptend.protocol.manifest import HealthSection

if TYPE_CHECKING:  # stage runs in the worker child: the agent never imports tuf or pydantic
    from tuf.api.metadata import TargetFile

    from uptend.protocol.targets import TargetCustom


@dataclass(frozen=True, slots=True)
class Signed:
    """A target as the signed metadata describes it."""

    name: str
    info: "TargetFile"
    custom: "TargetCustom"


@dataclass(frozen=True, slots=True)
class PackageState:
    """A package kind's package as its manager reports it (protocol/packages.py)."""

    name: str  # the package the installed version's manifest declares
    expected: str  # the version that manifest declares
    found: str | None  # the version the package manager has; None: not installed


def ignore(_message: str) -> None:
    """A `Say` that drops what it is told."""


Say = Callable[[str], None]  # writes one line into the update's attempt log


TAIL_LINES = 30  # of what an installer said, into the report


def tail(output: str) -> str:
    return "\n".join(output.splitlines()[-TAIL_LINES:])


class InstallFailedError(Exception):
    """The system's installer refused the version: reported with the tail of what it said."""

    def __init__(self, reason: str, output: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.output = output


class InstallBusyError(Exception):
    """The system's installer is busy with another installation: try again later."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Installer(Protocol):
    kind: str
    # activate runs the system's installer (dpkg, rpm, a command): in the worker child, so
    # that however long it takes the agent's loop goes on (check-ins, commands, other apps)
    activates_in_child: bool

    def staged(self, version: str) -> bool:
        """Whether `version` is complete on this host (staged before a crash, or earlier)."""
        ...

    def stage(self, signed: Signed, artifact: Path, job: Context, span: Span = no_span) -> None:
        """Make the verified `artifact` a complete version; raise on any problem.

        `span` times the kind's steps (`agent/observe.py`: bundle: verify, unpack, sync).
        """
        ...

    def activate(self, version: str, say: Say = ignore) -> None:
        """Make `version` the installed one; InstallFailedError if the system's installer refuses.

        `say` takes what the installer printed, for the attempt log.
        """
        ...

    def busy(self) -> str | None:
        """Why `activate` cannot run now without failing (dpkg's lock held), or None."""
        ...

    def deactivate(self) -> None: ...

    def read_back(self) -> PackageState | None:
        """What the package manager says is installed, for the status (None: not a package)."""
        ...

    def installed(self) -> str | None: ...

    def health(self, version: str) -> tuple[HealthSection, Path]:
        """How to judge `version`, and the directory its probes run in."""
        ...

    def cleanup(self, keep: set[str | None]) -> None:
        """Drop staging leftovers and versions other than `keep` and one previous version."""
        ...
