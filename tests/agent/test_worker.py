"""The worker child's pipe, taken as hostile: real child processes, real signals.

`scripted` swaps the child's module for a small script, so a child can die, lie, flood or
hang on purpose; the real child (`python -m uptend.agent.child`) runs in the last tests and
in tests/agent/test_worker_e2e.py (and every e2e and crash-matrix test, through the agent).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tuf.api.metadata import TargetFile

from tests.support.fleet import wait_until
from uptend.agent import artifacts, faults, jobs
from uptend.agent.installers import Signed
from uptend.agent.layout import Layout
from uptend.agent.worker import MAX_LINE, CancelledError, ChildJob, Work, Workers
from uptend.protocol.targets import ArchiveFormat, TargetCustom, target_path

WORKER_ONLY = (
    "tuf",
    "securesystemslib",
    "cryptography",
    "uptend.archive",
    "uptend.agent.artifacts",
    "uptend.agent.child",
    "uptend.agent.download",
    "uptend.agent.lookup",
    "uptend.agent.tuf_session",
)


def scripted(script: str, decode: Any = lambda v: v) -> ChildJob[Any]:
    """A job in a child that runs `script` (its stdin: one request line per job)."""
    job = Workers(command=[sys.executable, "-c", script])("scripted", "fetch", {"ask": 1}, decode)
    assert isinstance(job, ChildJob)
    return job


def finished(job: Work[Any], timeout_s: float = 10.0) -> Work[Any]:
    wait_until(job.done, timeout_s=timeout_s, what=f"{job.name} done")
    return job


def failure(job: Work[Any]) -> faults.Classified:
    with pytest.raises(faults.WorkerError) as caught:
        finished(job).result()
    found = faults.classify(caught.value, staging=False)
    assert found is not None
    return found


def test_progress_then_a_result_is_read_line_by_line() -> None:
    job = scripted(
        "import sys, json\n"
        "assert json.loads(sys.stdin.readline()) == {'kind': 'fetch', 'request': {'ask': 1}}\n"
        "print(json.dumps({'progress': [5, 10]}), flush=True)\n"
        "print(json.dumps({'progress': [10, 10]}))\n"
        "print(json.dumps({'result': 'fetched'}))",
        decode=lambda v: v.upper(),
    )
    assert finished(job).result() == "FETCHED"
    assert (job.progress.done, job.progress.total) == (10, 10)


def test_a_fault_the_child_classified_is_raised_as_its_verdict() -> None:
    job = scripted('print(\'{"fault": "release", "reason": "too big"}\')')
    with pytest.raises(faults.ReportedError) as caught:
        finished(job).result()
    assert faults.classify(caught.value, staging=True) == faults.Classified(
        faults.Fault.RELEASE, "too big"
    )


@pytest.mark.parametrize(
    ("script", "says"),
    [
        pytest.param("import sys; sys.exit(3)", "exited (code 3) without a result", id="exit-3"),
        pytest.param(
            "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
            "killed by signal 9",
            id="sigkill",
        ),
        pytest.param("print('hello')", "not JSON", id="not-json"),
        pytest.param("print('[1, 2]')", "unknown message", id="unknown-message"),
        pytest.param('print(\'{"progress": ["a", 1]}\')', "unknown message", id="bad-progress"),
        pytest.param('print(\'{"fault": "meteor", "reason": "x"}\')', "unknown fault", id="f"),
        pytest.param("import sys; sys.stdout.write('{\"result\": 1}')", "out of turn", id="no-eol"),
    ],
)
def test_a_child_that_dies_or_lies_is_a_transient_worker_fault(script: str, says: str) -> None:
    found = failure(scripted(script))
    assert found.fault is faults.Fault.WORKER
    assert found.resumes  # a fetch resumes in place after the backoff
    assert says in found.reason


def test_a_child_that_cannot_start_is_a_worker_fault_not_an_agent_crash() -> None:
    job = Workers(command=["/nonexistent/python"])("x", "fetch", {}, lambda v: v)
    assert "cannot start the worker" in failure(job).reason


def test_a_result_that_does_not_decode_is_the_workers_fault() -> None:
    job = scripted('print(\'{"result": {"demo": 7}}\')', decode=jobs.answers_from)
    assert "malformed" in failure(job).reason


def test_an_endless_line_is_cut_at_the_bound_and_the_child_killed() -> None:
    job = scripted("import sys\nwhile True: sys.stdout.write('x' * 65536)")
    assert "out of turn" in failure(job).reason
    assert len(job._garbage) < 100  # what is kept of the flood is a short reason
    assert job.child is not None
    assert job.child.proc.returncode == -signal.SIGKILL
    assert MAX_LINE == 1 << 20


# A child that answers each request line with its pid and the request, until its input ends.
SERVER = (
    "import json, os, sys\n"
    "for line in sys.stdin:\n"
    "    ask = json.loads(line)\n"
    "    print(json.dumps({'result': [os.getpid(), ask['kind']]}), flush=True)\n"
)


def test_one_child_serves_jobs_one_after_another_and_exits_when_closed() -> None:
    workers = Workers(command=[sys.executable, "-c", SERVER])
    first = finished(workers("a", "lookup", {}, lambda v: v)).result()
    second = finished(workers("b", "fetch", {}, lambda v: v)).result()
    assert [first[1], second[1]] == ["lookup", "fetch"]
    assert first[0] == second[0]  # the same process: its imports are paid once
    [child] = workers.children
    workers.close_idle()
    assert workers.children == []
    wait_until(lambda: child.proc.poll() is not None, what="the child gone")
    assert child.proc.returncode == 0  # it exited at the end of its input, not killed


def test_a_child_whose_result_is_not_taken_yet_is_neither_reused_nor_closed() -> None:
    """A job that ends in the middle of a tick keeps its child for the next step."""
    workers = Workers(command=[sys.executable, "-c", SERVER])
    first = finished(workers("a", "lookup", {}, lambda v: v))
    workers.close_idle()
    [child] = workers.children
    assert child.proc.poll() is None
    second = finished(workers("b", "fetch", {}, lambda v: v))
    assert first.result()[0] != second.result()[0]  # the second got a child of its own
    workers.close_idle()
    assert workers.children == []


def test_a_job_handed_to_a_child_that_just_died_ends_instead_of_hanging() -> None:
    """The instant between the pool seeing a child idle and handing it the next job."""
    workers = Workers(command=[sys.executable, "-c", SERVER])
    finished(workers("a", "lookup", {}, lambda v: v)).result()
    [child] = workers.children
    child.signal(signal.SIGKILL)
    wait_until(lambda: not child._reader.is_alive(), what="the reader ended")
    late: ChildJob[Any] = ChildJob("b", "fetch", {}, lambda v: v)
    child.run(late)
    assert "exited before it got its job" in failure(late).reason


def test_a_line_out_of_turn_after_a_result_ends_that_child() -> None:
    liar = SERVER + "    print('{\"progress\": [1, 1]}', flush=True)\n"  # after its result
    workers = Workers(command=[sys.executable, "-c", liar])
    first = finished(workers("a", "lookup", {}, lambda v: v)).result()
    [child] = workers.children
    wait_until(lambda: child.proc.poll() == -signal.SIGKILL, what="the lying child killed")
    second = finished(workers("b", "fetch", {}, lambda v: v)).result()
    assert second[0] != first[0]  # never handed to the child that lied


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.parametrize("ignores_sigterm", [False, True], ids=["sigterm", "sigkill"])
def test_cancel_kills_the_childs_whole_group_within_a_second(
    tmp_path: Path, ignores_sigterm: bool
) -> None:
    pids = tmp_path / "grandchild.pid"
    job = scripted(
        "import signal, subprocess, sys, time\n"
        + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignores_sigterm else "")
        + f"p = subprocess.Popen(['sleep', '60']); open({str(pids)!r}, 'w').write(str(p.pid))\n"
        "print('{\"progress\": [1, 2]}', flush=True); time.sleep(60)"
    )
    wait_until(lambda: job.progress.done == 1, what="the child under way")
    grandchild = int(pids.read_text())
    started = time.monotonic()
    job.cancel(wait_s=0.8)
    assert time.monotonic() - started < 1.0
    assert job.done()
    with pytest.raises(CancelledError):
        job.result()
    wait_until(lambda: _gone(grandchild), timeout_s=5, what="the grandchild killed too")


@pytest.fixture
def silent_server() -> Iterator[socket.socket]:
    """A TCP port that accepts and never answers: a download there hangs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        s.settimeout(30)
        yield s


def _fetch_record(layout: Layout) -> None:
    """The signed record of demo 2.0, as a look-up would have given it."""
    name = target_path("demo", "2.0", ArchiveFormat.TAR_GZ)
    custom = TargetCustom(
        app="demo",
        version="2.0",
        channel="stable",
        format=ArchiveFormat.TAR_GZ,
        unpacked_size=1,
        files=1,
    )
    signed = Signed(name, TargetFile.from_data(name, b"x" * 1000), custom)
    jobs.keep_record(layout, "demo", "2.0", artifacts.record(signed))


def test_the_real_child_dies_with_its_agent_even_of_kill_9(
    tmp_path: Path, silent_server: socket.socket
) -> None:
    """An orphaned child would write into staging under the next agent: PDEATHSIG kills it."""
    layout = Layout(tmp_path / "agent")
    layout.make()
    _fetch_record(layout)
    url = f"http://127.0.0.1:{silent_server.getsockname()[1]}/targets/"
    agent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from uptend.agent import jobs, worker\n"
            "from uptend.agent.layout import Layout\n"
            f"job = jobs.fetch(worker.Workers(), Layout(Path({str(layout.root)!r})), 'demo', '2.0',"
            f" {url!r})\n"
            "print(job.child.proc.pid, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert agent.stdout is not None
    with agent.stdout:
        child = int(agent.stdout.readline())
    connection, _ = silent_server.accept()  # the child is downloading: past its set-up
    with connection:
        assert not _gone(child)
        agent.kill()
        agent.wait()
        wait_until(lambda: _gone(child), timeout_s=5, what="the orphaned child gone")


def test_the_real_child_refuses_to_run_for_an_agent_that_is_not_its_parent() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "uptend.agent.child"],
        input=b'{"kind": "fetch", "request": {}}\n',
        capture_output=True,
        env={**os.environ, "UPTEND_WORKER_OF": "1"},
        check=False,
    )
    assert done.returncode == 1
    assert b"is gone" in done.stderr
    assert done.stdout == b""


def test_the_resident_agent_imports_none_of_the_workers_machinery() -> None:
    script = (
        "import sys, json; import uptend.agent.runner\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({WORKER_ONLY!r}))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == []
