"""The suite's shortcuts stand for what they replace: zygote children, in-process CLI calls.

tests/support/zygote.py forks the fleet's servers and agents from a preloaded interpreter;
tests/support/inproc.py runs admin commands in the test process. Each must give what a
fresh `python -m uptend ...` gives: its own process (pid, exit status, signals) for the
first, the same output and exit code for the second.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support import zygote
from tests.support.inproc import cli_in_process, in_process_ok


def test_a_zygote_child_is_its_own_process_with_its_exit_status(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with out.open("wb") as f:
        proc = zygote.popen("uptend", ["group", "--help"], stdout=f, stderr=f)
    assert proc.wait(timeout=60) == 0
    assert proc.pid != os.getpid()
    assert "Usage: python -m uptend group" in out.read_text()
    with out.open("wb") as f:
        bad = zygote.popen("uptend", ["no-such-group"], stdout=f, stderr=f)
    assert bad.wait(timeout=60) == 2  # click's usage error, as from a fresh interpreter
    assert "No such command" in out.read_text()


def test_a_zygote_child_dies_of_the_signal_it_is_sent(tmp_path: Path) -> None:
    with (tmp_path / "log").open("wb") as log:  # a module that serves until it is stopped
        proc = zygote.popen("http.server", ["0", "--bind", "127.0.0.1"], stdout=log, stderr=log)
    assert proc.poll() is None
    proc.terminate()
    assert proc.wait(timeout=60) == -signal.SIGTERM
    assert proc.poll() == -signal.SIGTERM


def test_an_in_process_call_says_what_a_fresh_interpreter_says() -> None:
    for args in (["group", "--help"], ["fleet", "list"], ["release", "nope"]):
        assert in_process_ok(args)
        env = {k: v for k, v in os.environ.items() if not k.startswith("UPTEND_")}
        here = cli_in_process(args, env)
        there = subprocess.run(
            [sys.executable, "-m", "uptend", *args],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert (here.returncode, here.stdout, here.stderr) == (
            there.returncode,
            there.stdout,
            there.stderr,
        ), args


def test_commands_that_need_their_own_process_get_one() -> None:
    assert not in_process_ok(["server", "run", "/x"])
    assert not in_process_ok(["agent", "run", "/x"])
    assert not in_process_ok(["demo"])
    assert in_process_ok(["agent", "status", "/x"])
