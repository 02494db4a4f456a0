"""Tests that keep the docs honest (datasette's test_docs.py, httpx's test_exported_members.py).

- every command's `--help` ends with an `Example:`;
- `uptend.protocol.__all__` is sorted and exports every public wire model;
- every command with `--json` output is documented in README.md.
"""

import enum
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from pydantic import BaseModel
from typer.testing import CliRunner

import uptend.protocol
from uptend.cli import app
from uptend.protocol import ReasonCode, admin_api, agent_api, errors, reasons

README = Path(__file__).resolve().parent.parent / "README.md"


def _walk(command: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():  # a group: its subcommands
        yield from _walk(sub, (*path, name))


COMMANDS = dict(_walk(typer.main.get_command(app), ()))
LEAVES = {path: cmd for path, cmd in COMMANDS.items() if not hasattr(cmd, "commands")}
JSON_COMMANDS = sorted(
    path for path, cmd in LEAVES.items() if any("--json" in p.opts for p in cmd.params)
)


def test_the_command_tree_is_walked() -> None:
    """Guards the walk itself: a change in Typer must not make the tests below vacuous."""
    assert {("server", "init"), ("release", "publish"), ("fleet", "list"), ("demo",)} <= set(LEAVES)
    assert ("release", "list") in JSON_COMMANDS


@pytest.mark.parametrize("path", sorted(LEAVES), ids=" ".join)
def test_every_command_help_has_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example:" in result.output
    example = re.search(r"Example:\s*(uptend [^\n]*)", result.output)
    assert example is not None, result.output
    # an example of this command, not of another one (options may precede a subcommand)
    assert example.group(1).startswith(f"uptend {path[0]}"), example.group(1)


@pytest.mark.parametrize(
    "path", sorted(p for p in COMMANDS if p not in LEAVES), ids=lambda p: " ".join(p) or "uptend"
)
def test_every_command_group_help_has_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert re.search(r"Example:\s*uptend", result.output), result.output


def _public_wire_types(module: Any) -> set[str]:
    return {
        name
        for name, obj in vars(module).items()
        if inspect.isclass(obj)
        and obj.__module__ == module.__name__
        and not name.startswith("_")
        and issubclass(obj, BaseModel | enum.Enum)
    }


def test_protocol_exports_are_sorted_and_complete() -> None:
    exported = uptend.protocol.__all__
    assert exported == sorted(exported)
    assert len(exported) == len(set(exported))
    for name in exported:
        assert hasattr(uptend.protocol, name), name
    wire = set().union(*(_public_wire_types(m) for m in (agent_api, admin_api, errors, reasons)))
    assert wire - set(exported) == set(), "public wire types missing from uptend.protocol"


@pytest.mark.skipif(not README.exists(), reason="README.md is not written yet")
@pytest.mark.parametrize("path", JSON_COMMANDS, ids=" ".join)
def test_every_json_command_is_in_the_readme(path: tuple[str, ...]) -> None:
    assert " ".join(("uptend", *path)) in README.read_text()


@pytest.mark.skipif(not README.exists(), reason="README.md is not written yet")
@pytest.mark.parametrize("code", list(ReasonCode))
def test_every_reason_code_is_in_the_readme(code: ReasonCode) -> None:
    assert f"| `{code.value}` |" in README.read_text()
