"""`uptend` loads only the command group it runs (uptend.cli's lazy root).

Each case runs the real entry point, `uptend.cli:main`, in a fresh interpreter and reads
its `sys.modules` afterwards: what a call imported, not how long it took (the wall time is
a figure in bench/e2e.py).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from uptend.cli import GROUPS, app, load_command

_RUN = """
import json, sys
out, sys.argv = sys.argv[1], ["uptend", *sys.argv[2:]]
from uptend.cli import main
try:
    main()
except SystemExit:
    pass
with open(out, "w") as f:
    json.dump(sorted(sys.modules), f)
"""

# What the server, the admin client and the agent's TUF stack pull in.
HEAVY = {
    "fastapi",
    "sqlalchemy",
    "uvicorn",
    "uvloop",
    "httptools",
    "tuf",
    "urllib3",
    "httpx",
    "cryptography",
}
OURS = {"uptend.protocol", "uptend.server", "uptend.agent", "uptend.archive"}

# What each group's module needs at import (so for its --help), beyond typer and rich.
NEEDS = {
    "demo": {"httpx", "uptend.protocol", "uptend.archive"},  # it publishes through release
    "server": set(),
    "keys": set(),  # it opens the repository only when a command runs
    "release": {"httpx", "uptend.protocol", "uptend.archive"},
    "group": {"httpx", "uptend.protocol"},
    "fleet": {"httpx", "uptend.protocol"},  # reason codes and states are its options
    "agent": set(),  # its admin commands (revoke, remove, ...) load httpx when they run
    "token": set(),  # likewise
    "freeze": {"httpx", "uptend.protocol"},
    "channel": {"httpx", "uptend.protocol", "uptend.policy"},  # parses waves and caps
    "rollout": {"httpx", "uptend.protocol"},
    "command": {"uptend.protocol"},  # its actions and states are its options
    "config": set(),  # it loads httpx and the wire models when a command runs
    "tuf-client": {"tuf", "urllib3", "cryptography", "uptend.agent"},
}


def imported(tmp_path: Path, *argv: str) -> tuple[set[str], str]:
    """(top-level packages and uptend subpackages imported, stdout) of `uptend ARGV`."""
    out = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", _RUN, str(out), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    modules: list[str] = json.loads(out.read_text())
    names = {m.split(".")[0] for m in modules}
    names |= {".".join(m.split(".")[:2]) for m in modules if m.startswith("uptend.")}
    names |= {m for m in modules if m.startswith("uptend.cli.")}
    return names, done.stdout


def test_root_help_imports_no_group_and_nothing_heavy(tmp_path: Path) -> None:
    names, output = imported(tmp_path, "--help")
    assert not names & (HEAVY | OURS | {"pydantic"})
    assert not {m for m in names if m.startswith("uptend.cli.")}
    for name, (_module, summary) in GROUPS.items():
        assert name in output
        assert summary.split()[0] in output


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_a_group_imports_only_what_it_needs(tmp_path: Path, name: str) -> None:
    names, output = imported(tmp_path, name, "--help")
    assert "Example: uptend" in output
    module = GROUPS[name][0]
    assert module in names
    others = {m for m, _summary in GROUPS.values()} - {module}
    if name == "demo":
        others.discard("uptend.cli.release")  # demo publishes with release's upload
    assert not names & others
    assert not names & (HEAVY | OURS) - NEEDS[name]
    # pydantic does come in: typer (0.2x) builds a pydantic TypeAdapter for every option.
    # What matters is that our wire models (uptend.protocol) stay out unless needed.


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_each_summary_is_the_group_s_own_help(name: str) -> None:
    help_text = load_command(name).help or ""
    assert help_text.split("\n\n")[0].strip() == GROUPS[name][1]


def test_the_root_lists_exactly_the_groups() -> None:
    root = typer.main.get_command(app)
    assert list(getattr(root, "commands", {})) == list(GROUPS)


# -- the resident agent -----------------------------------------------------------------------

_EXEC = """
import json, os, sys
out, sys.argv = sys.argv[1], ["uptend", *sys.argv[2:]]
def execv(path, argv):
    with open(out, "w") as f:
        json.dump({"path": path, "argv": argv}, f)
    raise SystemExit(0)
os.execv = execv
from uptend.cli import main
main()
"""

# Imported by `import uptend.agent.resident` (its whole start-up: the runner and what it uses).
_RESIDENT = """
import json, sys
import uptend.agent.resident
with open(sys.argv[1], "w") as f:
    json.dump(sorted(sys.modules), f)
"""

# Gone from the resident process with the exec and agent.wire.
RESIDENT_NEVER = {"typer", "rich", "click", "httpx", "uptend.cli", "uptend.server"}
RESIDENT_NEVER_MODULES = {
    "uptend.protocol.agent_api",  # the pydantic wire models: agent.wire mirrors them
    "uptend.protocol.admin_api",
    "uptend.protocol.reasons",
}
# The heavy machinery lives in the short-lived worker child (agent/child.py), the manifest and
# the probes are stdlib: none of it may come back into the long-lived process.
RESIDENT_HEAVY = {"pydantic", "tuf", "securesystemslib", "cryptography", "urllib3"}


def test_agent_run_execs_into_the_resident_entry_point(tmp_path: Path) -> None:
    out = tmp_path / "exec.json"
    argv = ["agent", "run", str(tmp_path / "agent"), "--once", "--keep-apps-on-exit"]
    done = subprocess.run(
        [sys.executable, "-c", _EXEC, str(out), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text()) == {
        "path": sys.executable,
        "argv": [
            sys.executable,
            "-m",
            "uptend.agent.resident",
            str(tmp_path / "agent"),
            "--once",
            "--keep-apps-on-exit",
        ],
    }


def _resident_modules(tmp_path: Path) -> list[str]:
    out = tmp_path / "modules.json"
    subprocess.run([sys.executable, "-c", _RESIDENT, str(out)], check=True, timeout=60)
    modules: list[str] = json.loads(out.read_text())
    return modules


def test_the_resident_agent_imports_no_cli_and_no_wire_models(tmp_path: Path) -> None:
    modules = _resident_modules(tmp_path)
    names = {m.split(".")[0] for m in modules}
    names |= {".".join(m.split(".")[:2]) for m in modules if m.startswith("uptend.")}
    assert not names & RESIDENT_NEVER
    assert not set(modules) & RESIDENT_NEVER_MODULES


@pytest.mark.parametrize("package", sorted(RESIDENT_HEAVY))
def test_the_resident_agent_imports_no_heavy_package(tmp_path: Path, package: str) -> None:
    assert package not in {m.split(".")[0] for m in _resident_modules(tmp_path)}


def test_pydantic_free_protocol_modules_load_without_pydantic(tmp_path: Path) -> None:
    """protocol's names load on first use: these submodules must not pull the models."""
    code = (
        "import sys, uptend.protocol, uptend.protocol.names, uptend.protocol.versions,"
        " uptend.protocol.errors, uptend.protocol.tokens, uptend.agent.wire,"
        " uptend.agent.control; print('pydantic' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"
