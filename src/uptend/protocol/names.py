"""Names of apps, groups and channels: safe as path segments, URL parts and TUF target names."""

import re

from uptend.errors import ConfigError
from uptend.protocol.limits import MAX_NAME

PATTERN = rf"[a-z0-9][a-z0-9_\-]{{0,{MAX_NAME - 1}}}"  # also checked by the wire models
_NAME = re.compile(PATTERN)


def check_name(kind: str, value: str) -> str:
    """Return `value` if it is a valid name for `kind`, else raise ConfigError."""
    if not _NAME.fullmatch(value):
        shown = repr(value) if len(value) <= MAX_NAME else f"{value[:20]!r}..."
        raise ConfigError(
            f"invalid {kind} name {shown}",
            hint=f"use 1-{MAX_NAME} lowercase letters, digits, '-' or '_', starting with a letter"
            " or digit",
        )
    return value
