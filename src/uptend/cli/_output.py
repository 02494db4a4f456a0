"""Output helpers shared by every command: rich for people, JSON for scripts."""

import json
import sys
from typing import Any, NoReturn

from rich.console import Console

from uptend.errors import UptendError

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # one error, one line: scripts grep it

__all__ = ["UptendError", "console", "err_console", "exit_with", "fail", "print_json"]


def fail(e: UptendError) -> None:
    err_console.print(f"[bold red]error:[/] {e.message}", highlight=False, markup=True)
    if e.hint:
        err_console.print(f"[yellow]hint:[/] {e.hint}", highlight=False)


def exit_with(e: UptendError) -> NoReturn:
    fail(e)
    raise SystemExit(e.exit_code)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()
