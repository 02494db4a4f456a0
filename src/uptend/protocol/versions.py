"""Release versions: PEP 440 (`1.0`, `2.1.3`, `2.0rc1`), ordered the way pip orders them.

PEP 440 was chosen over SemVer because the agents are Python and `packaging` already
ships with every Python toolchain; `1.2.3` is valid in both.
"""

import re

from packaging.version import InvalidVersion, Version

from uptend.errors import ConfigError

# Only the canonical-looking subset: no local versions ("+abc") or epochs, which would make
# target paths ambiguous or awkward in URLs.
_SAFE = re.compile(r"^[0-9][0-9A-Za-z.\-]*$")


def parse_version(text: str) -> Version:
    """Parse a release version or raise ConfigError naming it."""
    if not _SAFE.fullmatch(text):
        raise ConfigError(
            f"invalid version {text!r}",
            hint="use a PEP 440 version such as 1.0, 2.1.3 or 2.0rc1 (no '+', '!' or '/')",
        )
    try:
        return Version(text)
    except InvalidVersion:
        raise ConfigError(
            f"invalid version {text!r}",
            hint="use a PEP 440 version such as 1.0, 2.1.3 or 2.0rc1",
        ) from None


def is_version(text: str) -> bool:
    try:
        parse_version(text)
    except ConfigError:
        return False
    return True


def newest(versions: list[str]) -> str | None:
    """The highest of `versions` (pre-releases included), or None for an empty list."""
    return max(versions, key=parse_version, default=None)
