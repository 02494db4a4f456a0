"""The installed agent's launcher: `PREFIX/bin/uptend-agent` is a copy of this file.

Standard library only, and it imports nothing of uptend: it must run whatever the versions
under `PREFIX/versions/` contain, so it rarely changes (a new agent version never replaces
it). It reads the self-update state (`PREFIX/data/state/self.json`), picks the version to
run and execs into `PREFIX/versions/<v>/bin/python -m uptend.agent.resident PREFIX/data`,
so the service manager sees one process (same pid) from launcher to agent.

Fallback, always: a version made current but not yet confirmed (`current != good`: it has
not checked in since the switch) gets `MAX_BOOTS` starts; at the next one, or if its
environment is incomplete, the launcher marks it bad and goes back to `good` by itself,
whether or not the server answers. The agent confirms a version (`good = current`) after
its first check-in; the fallback it finds on start is reported by the good version.
"""

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

STATE = "state/self.json"  # under the data dir
MAX_BOOTS = 3  # starts of an unconfirmed version before the launcher falls back
PREFIX_ENV = "UPTEND_AGENT_PREFIX"  # set for the agent: it runs from an installed layout
TAIL_BYTES = 4096


def state_path(prefix: Path) -> Path:
    return prefix / "data" / STATE


def python_of(prefix: Path, version: str) -> Path:
    return prefix / "versions" / version / "bin" / "python"


def complete(prefix: Path, version: str | None) -> bool:
    """A version's environment is complete: renamed into versions/ whole, so it has python."""
    return bool(version) and python_of(prefix, str(version)).exists()


def load(prefix: Path) -> dict[str, Any]:
    try:
        state = json.loads(state_path(prefix).read_text())
    except (OSError, ValueError):
        state = {}
    if not isinstance(state, dict):
        state = {}
    state.setdefault("current", None)
    state.setdefault("good", state["current"])
    state.setdefault("boots", 0)
    state.setdefault("bad", {})
    state.setdefault("fallback", None)
    return state


def save(prefix: Path, state: dict[str, Any]) -> None:
    """Atomic and durable: write a temporary file, fsync, rename, fsync the directory."""
    path = state_path(prefix)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".self.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(state, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def log_tail(prefix: Path) -> str:
    try:
        with (prefix / "data" / "logs" / "agent.log").open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - TAIL_BYTES))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def choose(prefix: Path, state: dict[str, Any]) -> str:
    """The version to start now; `state` is updated (boot counted, or fallen back)."""
    current, good = state["current"], state["good"]
    if current != good:
        why = ""
        if not complete(prefix, current):
            why = f"agent {current} is incomplete on disk"
        elif state["boots"] >= MAX_BOOTS:
            why = f"agent {current} stopped {state['boots']} times before it checked in"
        if why and complete(prefix, good):
            state["bad"][str(current)] = why
            state["fallback"] = {"version": current, "reason": why, "log_tail": log_tail(prefix)}
            state["current"], state["boots"] = good, 0
            return str(good)
        state["boots"] += 1
    if not complete(prefix, state["current"]):
        raise SystemExit(f"uptend-agent: no complete agent version under {prefix}/versions")
    return str(state["current"])


def main(argv: list[str]) -> None:
    prefix = Path(__file__).resolve().parent.parent
    state = load(prefix)
    version = choose(prefix, state)
    save(prefix, state)
    python = python_of(prefix, version)
    os.environ[PREFIX_ENV] = str(prefix)
    args = [str(python), "-m", "uptend.agent.resident", str(prefix / "data"), *argv]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(python, args)  # noqa: S606 - the chosen version's own interpreter, no shell


if __name__ == "__main__":
    main(sys.argv[1:])
