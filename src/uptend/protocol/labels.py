"""Agent labels: `key=value` pairs given at enrollment and changed by the operator.

Bounded and checked like every other agent input: a key is 1-63 characters of letters,
digits and `._/-` starting with a letter or digit, a value 1-63 of letters, digits and `._-`;
at most `MAX_LABELS` per agent. Pure (no pydantic): the agent's enrollment checks them too.
"""

import re
from collections.abc import Sequence

from uptend.errors import ConfigError

MAX_LABELS = 32
KEY = r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}"
VALUE = r"[A-Za-z0-9._-]{1,63}"
_LABEL = re.compile(f"({KEY})=({VALUE})")
_REMOVE = re.compile(f"({KEY})-")
_HINT = "a label is KEY=VALUE, e.g. zone=eu-1: letters, digits and ._- (keys also /), 1-63 each"


def parse_label(text: str) -> tuple[str, str]:
    """(key, value) of `key=value`; ConfigError naming it if it is not a label."""
    m = _LABEL.fullmatch(text)
    if m is None:
        raise ConfigError(f"invalid label {text[:80]!r}", hint=_HINT)
    return m.group(1), m.group(2)


def parse_labels(items: Sequence[str]) -> dict[str, str]:
    """The labels `items` give (a key given twice: the last value), at most MAX_LABELS."""
    out = dict(parse_label(t) for t in items)
    if len(out) > MAX_LABELS:
        raise ConfigError(f"{len(out)} labels, more than {MAX_LABELS}", hint=_HINT)
    return out


def parse_change(items: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """`k=v` items to set and `k-` items to remove, as (set, remove)."""
    sets: list[str] = []
    removes: list[str] = []
    for text in items:
        if m := _REMOVE.fullmatch(text):
            removes.append(m.group(1))
        else:
            sets.append(text)
    return parse_labels(sets), removes
