"""`uptend ARGS` run in the test process: the real entry point without a new interpreter.

An admin command in a fresh interpreter costs its start-up and its imports (typer, rich,
httpx, pydantic, the protocol models: ~0.3 s, several times that on two loaded cores) for
a few milliseconds of work; e2e tests make hundreds of such calls, beside the agents they
wait for. `cli_in_process` runs `uptend.cli.main` (the console entry point) here with the
call's argv, environment, empty stdin and its own stdout/stderr, and returns what
`subprocess.run` would: the same output and exit code.

What is not the same, and why it does not matter for the commands allowed here: the
process (pid, umask, signal handlers: only `server` and `demo` touch them, and `agent run`
execs, so those always get their own process) and Python's warnings (a child prints them
to stderr and goes on; so does this, under the test's `-W error`, collecting what the call
left behind before it returns). A call made while
another thread is in one (a test that runs commands concurrently) gets its own process,
so concurrency stays real.
"""

import gc
import io
import os
import subprocess
import sys
import threading
import traceback
import types
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import uptend

# Groups whose commands are plain client or file work; `agent run` execs the agent (below).
IN_PROCESS_GROUPS = frozenset(
    {
        "agent",
        "channel",
        "command",
        "config",
        "fleet",
        "freeze",
        "group",
        "keys",
        "release",
        "rollout",
        "token",
    }
)
_MAIN_PY = str(Path(uptend.__file__).parent / "__main__.py")
_busy = threading.Lock()


def in_process_ok(args: Sequence[str]) -> bool:
    """Whether `uptend ARGS` may run in this process (it needs no process of its own)."""
    if not args or args[0] not in IN_PROCESS_GROUPS:
        return False
    return not (args[0] == "agent" and "run" in args[1:2])


def _stream() -> io.TextIOWrapper:
    # what a child's stdout is on a pipe: UTF-8 text, not a terminal, flushed at exit
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")


def _text(stream: io.TextIOWrapper) -> str:
    stream.flush()
    buffer = stream.buffer
    assert isinstance(buffer, io.BytesIO)
    return buffer.getvalue().decode("utf-8", errors="replace")


def cli_in_process(args: Sequence[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`subprocess.run([*UPTEND, *args], env=env, capture_output=True, text=True)`, here."""
    argv = ["python", "-m", "uptend", *args]
    if not _busy.acquire(blocking=False):
        return subprocess.run(
            [sys.executable, "-m", "uptend", *args],
            capture_output=True,
            text=True,
            env=dict(env),
            check=False,
        )
    try:
        return _run(list(args), env, argv)
    finally:
        _busy.release()


def _run(
    args: list[str], env: Mapping[str, str], argv: list[str]
) -> subprocess.CompletedProcess[str]:
    from uptend.cli import main

    out, err = _stream(), _stream()
    saved_env = dict(os.environ)
    saved = (sys.argv, sys.stdin, sys.stdout, sys.stderr, sys.modules["__main__"])
    # `python -m uptend`: click names the program after __main__'s package, as there
    fake_main = types.ModuleType("__main__")
    fake_main.__package__ = "uptend"
    fake_main.__file__ = _MAIN_PY
    code = 0
    try:
        for name in set(os.environ) - set(env):
            del os.environ[name]
        os.environ.update(env)
        sys.argv = [_MAIN_PY, *args]
        sys.stdin, sys.stdout, sys.stderr = io.StringIO(), out, err
        sys.modules["__main__"] = fake_main
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            try:
                main()
            except SystemExit as e:
                code = _exit_code(e.code, err)
            except BaseException:  # noqa: BLE001 - what a child dies of: its traceback, exit 1
                traceback.print_exc(file=err)
                code = 1
            # what the call left for the collector (an httpx client in a reference cycle)
            # is freed here, as a child's exit would: its ResourceWarning goes to stderr
            gc.collect()
        for w in caught:
            err.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno))
    finally:
        sys.argv, sys.stdin, sys.stdout, sys.stderr, sys.modules["__main__"] = saved
        for name in set(os.environ) - set(saved_env):
            del os.environ[name]
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(argv, code, _text(out), _text(err))


def _exit_code(code: object, err: io.TextIOWrapper) -> int:
    """What the interpreter makes of `sys.exit(code)`."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    err.write(f"{code}\n")
    return 1


__all__ = ["IN_PROCESS_GROUPS", "cli_in_process", "in_process_ok"]
