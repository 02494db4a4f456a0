"""The identity check behind adoption, on real processes read from /proc (see agent/procs)."""

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.agent.crash_support import running, start_time
from tests.support.fleet import wait_until
from uptend.agent import procs
from uptend.agent.procs import Facts, Record, Verdict, judge
from uptend.agent.supervisor import Stopping

RECORD = Record(
    run_id="r1", version="1.0", version_dir="/d/apps/a/versions/1.0", agent=9, pid=4242,
    starttime="777",
)  # fmt: skip
SAME = Facts(starttime="777", run_id="r1", version="1.0")


@pytest.mark.parametrize(
    ("facts", "current_dir", "verdict"),
    [
        pytest.param(SAME, RECORD.version_dir, Verdict.ADOPT, id="same process, current"),
        pytest.param(None, RECORD.version_dir, Verdict.GONE, id="gone"),
        pytest.param(Facts("778", "r1", "1.0"), RECORD.version_dir, Verdict.FOREIGN, id="reused"),
        pytest.param(Facts("777", None, None), RECORD.version_dir, Verdict.FOREIGN, id="no run id"),
        pytest.param(
            Facts("777", "r2", "1.0"), RECORD.version_dir, Verdict.FOREIGN, id="other run"
        ),
        pytest.param(SAME, "/d/apps/a/versions/2.0", Verdict.REAP, id="not current"),
        pytest.param(SAME, None, Verdict.REAP, id="no current"),
        pytest.param(
            Facts("777", "r1", "2.0"), RECORD.version_dir, Verdict.REAP, id="env says 2.0"
        ),
    ],
)
def test_judge(facts: Facts | None, current_dir: str | None, verdict: Verdict) -> None:
    assert judge(RECORD, facts, current_dir) is verdict


def test_judge_never_adopts_a_record_of_an_older_agent() -> None:
    old = Record(run_id="r1", version="1.0", pid=4242, starttime="777")  # no version_dir
    assert judge(old, SAME, RECORD.version_dir) is Verdict.REAP


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"[]",
        b'{"version": "1.0"}',
        b'{"run_id": "", "version": "1.0"}',
        b'{"run_id": 7, "version": "1.0"}',
        b'{"run_id": "r", "version": "1.0", "pid": -1}',
        b'{"run_id": "r", "version": "1.0", "pid": "12"}',
        b'{"run_id": "r", "version": "1.0", "surprise": 1}',
    ],
)
def test_a_damaged_record_names_no_process(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "run.json"
    path.write_bytes(content)
    assert Record.load(path) is None


def test_a_record_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    assert Record.load(path) is None
    path.write_bytes(RECORD.to_json())
    assert Record.load(path) == RECORD


def test_facts_read_the_process_itself() -> None:
    env = {**os.environ, procs.RUN_ID_ENV: "r9", procs.VERSION_ENV: "3.1"}
    proc = subprocess.Popen(["sleep", "600"], env=env)
    try:
        expected = Facts(start_time(proc.pid), "r9", "3.1")
        # Popen returns once exec began; the new environ is readable a moment later
        wait_until(lambda: procs.facts(proc.pid) == expected, timeout_s=10, what="facts")
        assert procs.starttime(proc.pid) == start_time(proc.pid)
        assert procs.facts(os.getpid()) == Facts(start_time(os.getpid()), None, None)
    finally:
        proc.kill()
    wait_until(lambda: not running(proc.pid), what="zombie")
    assert procs.facts(proc.pid) is None  # exited, not yet reaped: not running
    proc.wait()
    assert procs.facts(proc.pid) is None
    assert procs.starttime(proc.pid) is None


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "pid and start time"])
def test_an_adopted_handle_sees_the_exit(pidfd: bool) -> None:
    proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
    start = start_time(proc.pid)
    handle = procs.Adopted.open(proc.pid, start) if pidfd else procs.Adopted(proc.pid, start)
    assert handle is not None
    try:
        assert handle.pid == proc.pid
        assert handle.poll() is None
        assert handle.wait(0.05) is False
        proc.kill()
        assert handle.wait(10) is True  # seen at exit, before anyone reaps it
        assert handle.poll() == procs.UNKNOWN_EXIT
    finally:
        handle.close()
        proc.kill()
        proc.wait()


def test_stopping_an_adopted_process_stops_its_children_too() -> None:
    proc = subprocess.Popen(
        ["sh", "-c", "sleep 600 & echo $!; wait"], stdout=subprocess.PIPE, start_new_session=True
    )
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    handle = procs.Adopted.open(proc.pid, start_time(proc.pid))
    assert handle is not None
    try:
        stopping = Stopping.terminate([handle], {proc.pid}, timeout_s=10)
        wait_until(stopping.gone, timeout_s=10, what="the app stopped")  # polled: never blocks
        assert handle.poll() == procs.UNKNOWN_EXIT
        wait_until(lambda: not running(child), timeout_s=10, what="the app's child stopped")
    finally:
        handle.close()
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_a_pid_nobody_has_opens_nothing() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert procs.Adopted.open(proc.pid, None) is None


def test_stopping_kills_an_app_that_ignores_sigterm_after_the_timeout() -> None:
    proc = subprocess.Popen(["sh", "-c", 'trap "" TERM; exec sleep 600'], start_new_session=True)
    # comm, not cmdline: the shell's own cmdline names sleep before the trap has even run
    comm = Path(f"/proc/{proc.pid}/comm")
    wait_until(lambda: comm.read_bytes().strip() == b"sleep", what="the exec after the trap")
    handle = procs.Adopted.open(proc.pid, start_time(proc.pid))
    assert handle is not None
    try:
        stopping = Stopping.terminate([handle], {proc.pid}, timeout_s=0.2)
        wait_until(stopping.gone, timeout_s=10, what="killed after the timeout")
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        handle.close()
        proc.kill()
        proc.wait()
