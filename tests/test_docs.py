"""Tests that keep the docs honest (datasette's test_docs.py, httpx's test_exported_members.py).

- every command's `--help` ends with an `Example:`;
- `uptend.protocol.__all__` is sorted and exports every public wire model;
- every command with `--json` output is documented in README.md;
- docs/faults.md lists every case once, every case id cited in src/ and tests/ is in it, every
  test it names exists, and comments cite docs/, not documents outside the repository.
"""

import ast
import enum
import inspect
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from pydantic import BaseModel
from typer.testing import CliRunner

import uptend.protocol
from uptend.cli import app, load_command
from uptend.protocol import ReasonCode, admin_api, agent_api, credentials, errors, reasons

README = Path(__file__).resolve().parent.parent / "README.md"


def _walk(command: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():  # a group: its subcommands
        # the root holds placeholders until a group runs: load the real one
        yield from _walk(load_command(name) if not path else sub, (*path, name))


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
    modules = (agent_api, admin_api, credentials, errors, reasons)
    wire = set().union(*(_public_wire_types(m) for m in modules))
    assert wire - set(exported) == set(), "public wire types missing from uptend.protocol"


@pytest.mark.parametrize("path", JSON_COMMANDS, ids=" ".join)
def test_every_json_command_is_in_the_readme(path: tuple[str, ...]) -> None:
    assert " ".join(("uptend", *path)) in README.read_text()


# -- docs/: the fault catalogue and the comments that cite it --------------------------------

ROOT = README.parent
FAULTS = ROOT / "docs" / "faults.md"
CASE_ID = re.compile(r"\b[A-H][0-9]{1,2}\b")
CASE_ROW = re.compile(
    r"^\| ([A-H][0-9]{1,2}) \|([^|]*)\| (covered|partly|not covered) \|([^|]*)\|", re.M
)
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
# Documents outside this repository that comments used to cite.
OUTSIDE = re.compile(r"TEST-CATALOGUE|DESIGN\.md|DESIGN promise|STYLE [0-9]|\.\./shared|/shared/")
# Skipped: this file, whose pattern above is not a citation.
NOT_YET = {Path("tests/test_docs.py")}


def _sources() -> list[Path]:
    return sorted(p for d in ("src", "tests") for p in (ROOT / d).rglob("*.py"))


def _prose(path: Path) -> str:
    """The comments and docstrings of a Python file: where case ids are cited."""
    text = path.read_text()
    parts = [
        t.string
        for t in tokenize.generate_tokens(io.StringIO(text).readline)
        if t.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            parts.append(ast.get_docstring(node) or "")
    return "\n".join(parts)


def _cases() -> dict[str, tuple[str, str]]:
    """Case id -> (status, 'covered by' cell) from the tables of docs/faults.md."""
    rows = CASE_ROW.findall(FAULTS.read_text())
    assert len(rows) == len({r[0] for r in rows}), "a case is listed twice"
    return {case: (status, tests) for case, _what, status, tests in rows}


def test_the_catalogue_lists_every_case_once_with_a_status() -> None:
    cases = _cases()
    groups = {"A": range(1, 16), "B": range(16, 20), "C": range(20, 26), "D": range(26, 36)}
    groups |= {"E": range(36, 40), "F": range(40, 44), "G": range(44, 48), "H": range(48, 52)}
    assert set(cases) == {f"{g}{n}" for g, numbers in groups.items() for n in numbers}
    for case, (status, tests) in cases.items():
        named = TEST_REF.findall(tests)
        assert bool(named) == (status != "not covered"), f"{case}: {status} with {named}"


def test_every_case_id_cited_in_src_and_tests_is_in_the_catalogue() -> None:
    cases = _cases()
    cited = {
        (path.relative_to(ROOT), case)
        for path in _sources()
        for case in CASE_ID.findall(_prose(path))
    }
    assert {case for _path, case in cited} >= {"A11", "D33", "F43"}  # the scan finds them
    assert sorted(c for c in cited if c[1] not in cases) == []


def test_every_test_named_in_the_catalogue_exists() -> None:
    named = TEST_REF.findall(FAULTS.read_text())
    assert len(named) > 50
    for file, name in set(named):
        path = ROOT / file
        assert path.is_file(), file
        defined = {
            node.name
            for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.FunctionDef)
        }
        assert name in defined, f"{file}::{name}"


def test_comments_point_inside_the_repository() -> None:
    outside = [
        (str(path.relative_to(ROOT)), line)
        for path in _sources()
        if path.relative_to(ROOT) not in NOT_YET
        for line in path.read_text().splitlines()
        if OUTSIDE.search(line)
    ]
    assert outside == []
    assert not OUTSIDE.search(README.read_text())


@pytest.mark.parametrize("code", list(ReasonCode))
def test_every_reason_code_is_in_the_readme(code: ReasonCode) -> None:
    assert f"| `{code.value}` |" in README.read_text()
