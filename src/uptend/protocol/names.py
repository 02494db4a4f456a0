"""Names of apps, groups and channels: safe as path segments, URL parts and TUF target names."""

import re

from uptend.errors import ConfigError

_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,62}$")


def check_name(kind: str, value: str) -> str:
    """Return `value` if it is a valid name for `kind`, else raise ConfigError."""
    if not _NAME.fullmatch(value):
        raise ConfigError(
            f"invalid {kind} name {value!r}",
            hint="use 1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit",
        )
    return value
