"""An app's install kind and its package as the system's package manager reports it.

The agent reads its package back (`dpkg-query`, `rpm -q`) at each check-in while the app is
settled and reports it per app: the package's name and the version the manifest of the
installed release expects (both from the signed manifest), and the version the package
manager has (None: not installed). The server stores them and the fleet view words the
drift (`drift`), so a package changed by hand on the host shows.

Bounded like every agent input, with plain patterns (no pydantic: the agent uses them too):
a kind is a short lowercase word, a name is a Debian or rpm package name, an expected
version a Debian version or rpm EVR; the reported version is what the tool said, several
comma-separated when rpm holds more than one, which the agent `fit`s into FOUND (any
other character becomes '?').
"""

import re

KIND = r"[a-z][a-z0-9_-]{0,15}"  # bundle, deb, rpm, apt, command, agent
NAME = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}"  # a Debian (policy 5.6.1) or rpm package name
VERSION = r"[A-Za-z0-9._+~^:-]{1,140}"  # a Debian version, an rpm [epoch:]version-release
FOUND = r"[A-Za-z0-9._+~^:,? -]{1,255}"  # as reported (rpm: "1.0-1, 2.0-1"); ? masks
MAX_KIND, MAX_NAME, MAX_VERSION, MAX_FOUND = 16, 100, 140, 255  # characters (the columns)

_FOUND = re.compile(f"^{FOUND}$")
_NOT_FOUND_CHAR = re.compile(r"[^A-Za-z0-9._+~^:,? -]")


def fit(found: str) -> str:
    """`found` as the server takes it: other characters become '?', cut to MAX_FOUND."""
    text = _NOT_FOUND_CHAR.sub("?", found.strip())[:MAX_FOUND].strip()
    return text if _FOUND.match(text) else "?"


def drift(name: str, found: str | None, expected: str) -> str | None:
    """How the package differs from what the installed release expects; None: it does not."""
    if found is None:
        return f"package {name} is not installed, expected {expected}"
    if found != expected:
        return f"installed by hand: {found}, expected {expected}"
    return None
