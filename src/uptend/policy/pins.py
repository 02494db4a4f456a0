"""Pins and floors: which release an operator's pin names, and the floor no pin may cross.

Pure: the server reads a group's pin, the versions on the app's channel and the app's floor,
and asks here what the group's agents should run. It does so when it builds a group's plan
(once per generation), never per check-in, so a check-in's cost does not grow with the
number of releases.

A pin SPEC is one of:

* an exact version, `2.2` (PEP 440 normal form; it may be lower than what runs: the agent
  goes down to it because the directive says `pinned`);
* a prefix, `2.3.*`: the newest release whose version starts with 2.3 (pre-releases count,
  as they do for a channel's newest);
* `n-1` (or `n-2`, ...): the release before the channel's newest (two before, ...).

A floor is a release published with `--floor`: no lower version of the app may be installed
any more. It beats every pin: a pin below it is refused when it is set, and a pin that a
later floor leaves below it is held at the lowest release the floor allows (the reason says
so, code `floor`). A channel whose newest release is below the floor directs nothing new.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

from packaging.version import Version

from uptend.errors import ConfigError
from uptend.protocol.reasons import ReasonCode
from uptend.protocol.versions import newest, normalize, parse_version

MAX_BACK = 20  # `n-20` at most: further back, pin the exact version
_PREFIX = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,9}){0,5})\.\*")
_BACK = re.compile(r"n-([0-9]{1,2})")
_HINT = "a pin is an exact version (2.2), a prefix (2.3.*) or n-1 (the release before the newest)"


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a group's agents should run for one app, as its pin and the app's floor say."""

    version: str | None  # None: keep what runs (nothing the pin and floor allow is published)
    pinned: bool  # an operator pin chose it: the agent may go down to it
    code: ReasonCode | None  # PINNED or FLOOR while it holds the app below the channel's newest
    message: str


def parse_pin(text: str) -> str:
    """The canonical form of pin `text` (an exact version in PEP 440 normal form).

    Raises:
        ConfigError: `text` is not a pin spec.
    """
    spec = text.strip()
    if _PREFIX.fullmatch(spec):
        return spec
    if m := _BACK.fullmatch(spec.lower()):
        back = int(m.group(1))
        if not 1 <= back <= MAX_BACK:
            raise ConfigError(f"pin {spec!r} reaches back 1 to {MAX_BACK} releases", hint=_HINT)
        return f"n-{back}"
    try:
        return normalize(spec)
    except ConfigError:
        raise ConfigError(f"invalid pin {text[:40]!r}", hint=_HINT) from None


def matching(spec: str, releases: Sequence[str]) -> str | None:
    """The release of `releases` that canonical pin `spec` names, or None if none does."""
    versions = sorted({parse_version(r): r for r in releases}.items())
    if m := _PREFIX.fullmatch(spec):
        prefix = tuple(int(p) for p in m.group(1).split("."))
        found = [r for v, r in versions if _starts(v, prefix)]
        return found[-1] if found else None
    if m := _BACK.fullmatch(spec):
        back = int(m.group(1))
        return versions[-1 - back][1] if back < len(versions) else None
    exact = parse_version(spec)
    return next((r for v, r in versions if v == exact), None)


def _starts(version: Version, prefix: tuple[int, ...]) -> bool:
    release = version.release + (0,) * max(0, len(prefix) - len(version.release))
    return release[: len(prefix)] == prefix


def floor_of(floors: Sequence[str]) -> str | None:
    """The app's floor: the highest of the releases published with `--floor`."""
    return newest(list(floors))


def below(version: str, floor: str | None) -> bool:
    return floor is not None and parse_version(version) < parse_version(floor)


def resolve(spec: str | None, releases: Sequence[str], floor: str | None) -> Resolved | None:
    """What the pin `spec` (canonical, or None) and the floor make the group run.

    None when neither matters: the agents follow the channel's newest as usual.

    Args:
        spec: the group's pin for the app, if any.
        releases: the versions published on the app's channel for the group.
        floor: the app's floor, if any.
    """
    head = newest(list(releases))
    if head is None:
        return None  # nothing published: `no_release` says it
    allowed = [r for r in releases if not below(r, floor)]
    if spec is None:
        if not below(head, floor):
            return None
        msg = f"the newest release on the channel, {head}, is below the floor {floor}"
        return Resolved(None, pinned=False, code=ReasonCode.FLOOR, message=msg)
    version = matching(spec, releases)
    if version is None:
        msg = f"pinned to {spec}, which matches no release on the channel: keeps what runs"
        return Resolved(None, pinned=False, code=ReasonCode.PINNED, message=msg)
    if below(version, floor):
        lowest = min(allowed, key=parse_version, default=None)
        if lowest is None:
            msg = f"pinned to {spec} ({version}), below the floor {floor}: no release allowed"
            return Resolved(None, pinned=False, code=ReasonCode.FLOOR, message=msg)
        msg = (
            f"pinned to {spec} ({version}), below the floor {floor} published since: held at"
            f" {lowest}, the lowest release the floor allows"
        )
        code = ReasonCode.FLOOR if lowest != head else None
        return Resolved(lowest, pinned=True, code=code, message=msg)
    code = ReasonCode.PINNED if version != head else None
    return Resolved(version, pinned=True, code=code, message=f"pinned to {spec} ({version})")
