"""Release versions: PEP 440 (`1.0`, `2.1.3`, `2.0rc1`), ordered the way pip orders them.

PEP 440 was chosen over SemVer because the agents are Python and `packaging` already
ships with every Python toolchain; `1.2.3` is valid in both.

A release is stored and signed in its normal form (`1.1-0` is `1.1.post0`, `2.0RC1` is
`2.0rc1`), and two spellings PEP 440 holds equal (`1.0`, `1.00`, `1.0.0`) are one version:
`same_version` is the test a publish applies.
"""

import re

from packaging.version import InvalidVersion, Version

from uptend.errors import ConfigError
from uptend.protocol.limits import MAX_VERSION

# Only the canonical-looking subset of PEP 440: no local versions ("+abc"), epochs or a
# leading "v", which would make target paths ambiguous or awkward in URLs. The same language
# as `parse_version` accepts (tested); a plain regex so that pydantic checks it without Python.
PATTERN = (
    r"(?i:[0-9]+(?:\.[0-9]+)*"
    r"(?:[-.]?(?:a|b|c|rc|alpha|beta|pre|preview)[-.]?[0-9]*)?"
    r"(?:-[0-9]+|[-.]?(?:post|rev|r)[-.]?[0-9]*)?"
    r"(?:[-.]?dev[-.]?[0-9]*)?)"
)
_SAFE = re.compile(PATTERN)
_HINT = "use a PEP 440 version such as 1.0, 2.1.3 or 2.0rc1 (no '+', '!' or '/')"


def parse_version(text: str) -> Version:
    """Parse a release version or raise ConfigError naming it (cut short if it is long)."""
    if len(text) > MAX_VERSION:
        raise ConfigError(
            f"invalid version {text[:20]!r}...: longer than {MAX_VERSION} characters", hint=_HINT
        )
    if not _SAFE.fullmatch(text):
        raise ConfigError(f"invalid version {text!r}", hint=_HINT)
    try:
        return Version(text)
    except InvalidVersion:  # the pattern should make this unreachable; keep the guard
        raise ConfigError(f"invalid version {text!r}", hint=_HINT) from None


def normalize(text: str) -> str:
    """The PEP 440 normal form of a release version (raises ConfigError like parse_version)."""
    return str(parse_version(text))


def same_version(a: str, b: str) -> bool:
    """Whether PEP 440 holds `a` and `b` equal (`1.0` == `1.0.0`), however spelled."""
    return parse_version(a) == parse_version(b)


def is_version(text: str) -> bool:
    try:
        parse_version(text)
    except ConfigError:
        return False
    return True


def newest(versions: list[str]) -> str | None:
    """The highest of `versions` (pre-releases included), or None for an empty list."""
    return max(versions, key=parse_version, default=None)
