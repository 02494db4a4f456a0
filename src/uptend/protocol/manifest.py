"""The `uptend.toml` manifest at the root of every release.

```toml
[app]
command = ["python3", "app.py"]   # run with the version directory as working directory
reload_signal = "HUP"              # optional: sent on a new config instead of a restart

[health]
probation = 10                     # seconds the new version must stay up
http = "http://127.0.0.1:8080/health"   # optional: 2xx = healthy
command = ["./check.sh"]           # optional: exit 0 = healthy
timeout = 5                        # optional: seconds one probe may take

[deb]                              # only in a deb release (signed in its custom, not in the .deb)
package = "hello"                  # the one package this app may install (dpkg's Package)
version = "2.0-1"                  # dpkg's Version of this release's .deb

[rpm]                              # only in an rpm release: the same, as rpm names them
package = "hello"                  # rpm's NAME
version = "2.0-1"                  # rpm's EVR ([epoch:]version-release)

[apt]                              # only in an apt release (with [deb]): the bytes come from
repository = "uptend"              # the host's own signed apt repository <name>.list

[installer]                        # only in a command release: the target is the installer
command = ["msiexec", "/i", "{file}", "/qn"]   # {file}: the verified installer
file = "setup.msi"                 # the name it is kept under in versions/<v>/
timeout = 600                      # seconds; then its process group is killed: failed
success = [0]                      # exit codes: installed
reboot = [3010, 1641]              # installed, a reboot finishes it
busy = [1618]                      # another installation runs: deferred, not failed
```

Plain frozen dataclasses checked by hand rather than pydantic: the resident agent reads the
manifest, and pydantic alone would cost it ~8 MB. Each field carries its rule in its
metadata; `parse_manifest` reports every problem as `loc: message` (unknown keys, wrong types
-- a bool is not a number, a string is not a list -- NaN/inf, values out of range).
"""

import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, TypeVar

from uptend.errors import ConfigError

MANIFEST_NAME = "uptend.toml"

T = TypeVar("T")
# A rule checks one value at `loc`: it returns the value to store, or appends to problems.
Rule = Callable[[str, object, list[str]], Any]


def _number(low: float, high: float, *, above_low: bool = False) -> Rule:
    """A finite int or float in [low, high] (or (low, high] with `above_low`)."""

    def check(loc: str, value: object, problems: list[str]) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"{loc}: Input should be a valid number")
        elif not math.isfinite(value):
            problems.append(f"{loc}: Input should be a finite number")
        elif above_low and value <= low:
            problems.append(f"{loc}: Input should be greater than {low:g}")
        elif value < low:
            problems.append(f"{loc}: Input should be greater than or equal to {low:g}")
        elif value > high:
            problems.append(f"{loc}: Input should be less than or equal to {high:g}")
        else:
            return float(value)
        return None

    return check


def _url(loc: str, value: object, problems: list[str]) -> str | None:
    if not isinstance(value, str):
        problems.append(f"{loc}: Input should be a valid string")
    elif not re.match(r"^https?://", value):
        problems.append(f"{loc}: String should match pattern '^https?://'")
    else:
        return value
    return None


def _command(loc: str, value: object, problems: list[str]) -> list[str] | None:
    """A non-empty list of non-empty strings: argv, never a shell line."""
    if not isinstance(value, list):
        problems.append(f"{loc}: Input should be a valid list")
        return None
    if not value:
        problems.append(f"{loc}: List should have at least 1 item after validation, not 0")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            problems.append(f"{loc}.{i}: Input should be a valid string")
        elif not item:
            problems.append(f"{loc}.{i}: String should have at least 1 character")
    return list(value)


def _table(cls: type[T]) -> Rule:
    return lambda loc, value, problems: _build(cls, loc, value, problems)


def _build(cls: type[T], loc: str, raw: object, problems: list[str]) -> T | None:
    """`cls` from the TOML table `raw`, or None with what is wrong appended to problems."""
    if not isinstance(raw, dict):
        problems.append(f"{loc}: Input should be a table")
        return None
    before = len(problems)
    prefix = f"{loc}." if loc else ""
    values: dict[str, object] = {}
    known = set()
    for f in fields(cls):  # type: ignore[arg-type]
        known.add(f.name)
        if f.name in raw:
            values[f.name] = f.metadata["rule"](prefix + f.name, raw[f.name], problems)
        elif f.default is MISSING:
            problems.append(f"{prefix}{f.name}: Field required")
    problems.extend(
        f"{prefix}{key}: Extra inputs are not permitted" for key in raw if key not in known
    )
    return cls(**values) if len(problems) == before else None


RELOAD_SIGNALS = ("HUP", "USR1", "USR2")


def _signal(loc: str, value: object, problems: list[str]) -> str | None:
    if isinstance(value, str) and value.upper().removeprefix("SIG") in RELOAD_SIGNALS:
        return value.upper().removeprefix("SIG")
    problems.append(f"{loc}: Input should be one of {', '.join(RELOAD_SIGNALS)}")
    return None


@dataclass(frozen=True, kw_only=True, slots=True)
class AppSection:
    command: list[str] = field(metadata={"rule": _command})
    # what tells the app to read UPTEND_CONFIG_FILE again (None: the agent restarts it)
    reload_signal: str | None = field(default=None, metadata={"rule": _signal})


@dataclass(frozen=True, kw_only=True, slots=True)
class HealthSection:
    probation: float = field(default=10.0, metadata={"rule": _number(0, 3600)})
    http: str | None = field(default=None, metadata={"rule": _url})
    command: list[str] | None = field(default=None, metadata={"rule": _command})
    timeout: float = field(default=5.0, metadata={"rule": _number(0, 600, above_low=True)})


_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]{1,99}$")  # Debian policy 5.6.1
_DEB_VERSION = re.compile(r"^[0-9][A-Za-z0-9.+~:-]{0,99}$")


def _matching(pattern: re.Pattern[str], what: str) -> Rule:
    def check(loc: str, value: object, problems: list[str]) -> str | None:
        if isinstance(value, str) and pattern.match(value):
            return value
        problems.append(f"{loc}: Input should be {what}")
        return None

    return check


@dataclass(frozen=True, kw_only=True, slots=True)
class DebSection:
    package: str = field(metadata={"rule": _matching(_PACKAGE, "a Debian package name")})
    version: str = field(metadata={"rule": _matching(_DEB_VERSION, "a Debian version")})


_RPM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")
_RPM_EVR = re.compile(r"^([0-9]{1,10}:)?[A-Za-z0-9._+~^]{1,60}-[A-Za-z0-9._+~^]{1,60}$")


@dataclass(frozen=True, kw_only=True, slots=True)
class RpmSection:
    package: str = field(metadata={"rule": _matching(_RPM_NAME, "an rpm package name")})
    version: str = field(metadata={"rule": _matching(_RPM_EVR, "an rpm version-release")})


def _codes(loc: str, value: object, problems: list[str]) -> tuple[int, ...] | None:
    """A list of exit codes (any int: Windows' are unsigned 32-bit)."""
    if not isinstance(value, list) or not all(
        isinstance(c, int) and not isinstance(c, bool) for c in value
    ):
        problems.append(f"{loc}: Input should be a list of exit codes")
        return None
    return tuple(value)


_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True, kw_only=True, slots=True)
class AptSection:
    """Patchman's repository mode: the host's list file `<repository>.list` has the bytes."""

    repository: str = field(metadata={"rule": _matching(_FILE, "a repository name")})


@dataclass(frozen=True, kw_only=True, slots=True)
class InstallerSection:
    """How the `command` kind runs its installer ({file}: the verified file) and reads it."""

    command: list[str] = field(metadata={"rule": _command})
    file: str = field(default="installer", metadata={"rule": _matching(_FILE, "a file name")})
    timeout: float = field(default=600.0, metadata={"rule": _number(0, 86400, above_low=True)})
    success: tuple[int, ...] = field(default=(0,), metadata={"rule": _codes})
    reboot: tuple[int, ...] = field(default=(3010, 1641), metadata={"rule": _codes})
    busy: tuple[int, ...] = field(default=(1618,), metadata={"rule": _codes})


@dataclass(frozen=True, kw_only=True, slots=True)
class Manifest:
    app: AppSection = field(metadata={"rule": _table(AppSection)})
    health: HealthSection = field(default=HealthSection(), metadata={"rule": _table(HealthSection)})
    deb: DebSection | None = field(default=None, metadata={"rule": _table(DebSection)})
    rpm: RpmSection | None = field(default=None, metadata={"rule": _table(RpmSection)})
    apt: AptSection | None = field(default=None, metadata={"rule": _table(AptSection)})
    installer: InstallerSection | None = field(
        default=None, metadata={"rule": _table(InstallerSection)}
    )


def parse_manifest(data: bytes, *, where: str = MANIFEST_NAME) -> Manifest:
    """Parse manifest bytes or raise ConfigError that names `where` and the problem."""
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(
            f"{where} is not valid TOML: {e}", hint="see the manifest format in README.md"
        ) from None
    problems: list[str] = []
    manifest = _build(Manifest, "", raw, problems)
    if manifest is None:
        raise ConfigError(
            f"{where} is invalid: {'; '.join(problems)}",
            hint='it needs at least [app] command = ["prog", "arg"]; see README.md',
        )
    return manifest
