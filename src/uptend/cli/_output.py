r"""Output helpers shared by every command: rich for people, JSON for scripts.

Text that came from an agent or a release (names, versions, reasons, log tails, error
messages that quote them) is hostile: it goes to the terminal only through `literal` or
`literal_lines`. They build rich `Text`, which never interprets markup (`[/]` prints as
itself, `[link=…]` makes no link), and show every character that could move the cursor,
start a terminal escape (ESC, CSI, OSC), break a table row or reorder what is shown (the
control characters 0x00-0x1f, 0x7f-0x9f, line and paragraph separators, bidi overrides and
other format characters, lone surrogates) as a Python-style escape: `\x1b`, `\n`,
`\u202e`. One value, one line. `--json` output is the exact data: `json.dumps` escapes
all of it by itself.
"""

import json
import sys
import unicodedata
from typing import Any, NoReturn

from rich.console import Console
from rich.text import Text

from uptend.errors import UptendError

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # one error, one line: scripts grep it

__all__ = [
    "UptendError",
    "console",
    "err_console",
    "escaped",
    "escaped_lines",
    "exit_with",
    "fail",
    "literal",
    "literal_lines",
    "print_json",
]

_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# Cc: 0x00-0x1f, DEL, 0x80-0x9f. Cf: bidi embeddings/overrides/isolates, zero-width characters, soft
# hyphen. Zl, Zp: U+2028/U+2029, which some terminals take as newlines. Cs: lone
# surrogates, which cannot even be encoded for the terminal.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def _escape(ch: str) -> str:
    if ch in _SHORT:
        return _SHORT[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escaped(value: object) -> str:
    """`value` as a string with every unsafe character shown as its escape."""
    text = str(value)
    if text.isprintable():  # the common case: nothing to escape (no Cc, Cf, Z* but space)
        return text
    return "".join(
        _escape(ch) if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch for ch in text
    )


def literal(value: object, style: str = "") -> Text:
    """Untrusted text as it is, on one line: no markup, unsafe characters escaped."""
    return Text(escaped(value), style=style)


def escaped_lines(value: str) -> list[str]:
    r"""A multi-line untrusted text (a log tail) split at `\n`, each line `escaped`."""
    return [escaped(line) for line in value.removesuffix("\n").split("\n")]


def literal_lines(value: str, style: str = "") -> list[Text]:
    """`escaped_lines` as rich `Text`, for the console."""
    return [Text(line, style=style) for line in escaped_lines(value)]


def fail(e: UptendError) -> None:
    # An error can quote what an agent or a server said: literal, like any other such text.
    err_console.print(Text.assemble(("error:", "bold red"), " ", literal(e.message)))
    if e.hint:
        err_console.print(Text.assemble(("hint:", "yellow"), " ", literal(e.hint)))


def exit_with(e: UptendError) -> NoReturn:
    fail(e)
    raise SystemExit(e.exit_code)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()
