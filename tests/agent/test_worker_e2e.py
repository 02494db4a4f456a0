"""The look-up, fetch and stage run in a worker child of the real agent.

kill -9 of the child alone: the agent must take the dead child as a transient fault (never
its own crash), keep the bytes already fetched, and resume them with a Range request after
the backoff. And one child serves the whole update, then exits.
"""

import os
import signal
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from tests.e2e.test_hostile import APP, PROBATION, artifact, host_on_1_0, proxy, via
from tests.support.fleet import Fleet, Host, make_release, wait_until
from tests.support.tamper_proxy import TamperProxy
from uptend.agent.layout import Layout
from uptend.agent.runner import Agent
from uptend.agent.worker import ChildJob, Work, Workers

__all__ = ["proxy"]
T = TypeVar("T")


def runs(host: Host, version: str) -> bool:
    return host.running_version(APP) == version


def exited(pid: int) -> bool:
    """A child of this process that is gone and reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


BIG = 4 << 20  # random bytes: they do not compress
RATE = 512 << 10  # bytes per second through the proxy


def worker_children(agent_pid: int) -> list[int]:
    """Pids of the agent's live `python -m uptend.agent.child` processes."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ours = int(stat[1]) == agent_pid and stat[0] != "Z"
        if ours and b"uptend.agent.child" in cmdline:
            found.append(int(entry.name))
    return found


def test_a_fetch_child_killed_mid_download_is_resumed_by_the_same_agent(
    fleet: Fleet, proxy: TamperProxy
) -> None:
    host = host_on_1_0(fleet, **via(proxy))
    release = make_release(fleet.root / "releases", "2.0", probation=PROBATION)
    (release / "blob.bin").write_bytes(os.urandom(BIG))
    target_dir = f"/tuf/targets/{APP}/2.0/"
    proxy.slow(target_dir, RATE)
    fleet.cli("release", "publish", APP, "2.0", str(release))
    assert host.proc is not None
    agent = host.proc

    def part() -> int:
        parts = list((host.dir / "apps" / APP / "staging").glob("*.part"))
        return parts[0].stat().st_size if parts else 0

    wait_until(lambda: part() > 0, what="the download under way")
    [child] = worker_children(agent.pid)  # the one that looked up 2.0 now fetches it
    os.kill(child, signal.SIGKILL)
    wait_until(lambda: child not in worker_children(agent.pid), what="child gone")
    kept = part()
    assert 0 < kept < BIG  # the bytes so far stay for the resume
    assert agent.poll() is None, host.log_text()[-3000:]  # the agent did not die with it

    proxy.clear()
    wait_until(lambda: host.running_version(APP) == "2.0", timeout_s=60, what="2.0 running")
    assert agent.poll() is None  # the same agent finished the update
    (first_range, first_bytes), *rest = proxy.served_for(target_dir)
    assert first_range is None
    resumed_range, resumed_bytes = rest[0]
    assert resumed_range is not None
    start = int(resumed_range.removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= first_bytes
    assert start + resumed_bytes == artifact(fleet, "2.0").stat().st_size
    logs = "\n".join(p.read_text() for p in (host.dir / "logs" / "updates").glob("*-2.0.log"))
    assert "failed (worker)" in logs


class Counted(Workers):
    """The agent's pool, noting which child each job was handed to."""

    def __init__(self, on_done: Callable[[], None]) -> None:
        super().__init__(on_done)
        self.handed: list[tuple[str, int]] = []  # kind, pid

    def __call__(
        self, name: str, kind: str, request: dict[str, Any], decode: Callable[[Any], T]
    ) -> Work[T]:
        job = super().__call__(name, kind, request, decode)
        assert isinstance(job, ChildJob)
        assert job.child is not None
        self.handed.append((kind, job.child.proc.pid))
        return job


def test_an_update_looks_up_fetches_and_stages_in_one_child_that_then_exits(
    fleet: Fleet,
) -> None:
    """One child per update: the imports of TUF and cryptography are paid once, not thrice."""
    fleet.assign(APP)
    host = fleet.add_host()
    agent = Agent(Layout(host.dir))
    workers = agent.spawn = Counted(agent.wake.set)
    loop = threading.Thread(target=agent.run)
    loop.start()
    try:
        for version in ("1.0", "2.0"):
            fleet.publish(APP, version, probation=PROBATION)
            wait_until(partial(runs, host, version), what=f"{version} runs")
            wait_until(lambda: not agent.busy(), what=f"{version} through probation")
            kinds, pids = zip(*workers.handed, strict=True)
            assert kinds == ("lookup", "fetch", "stage")
            [child] = set(pids)
            assert workers.children == []  # closed at the end of the tick after the stage
            wait_until(partial(exited, child), what="the child exited")
            workers.handed.clear()
    finally:
        agent.request_stop()
        loop.join(timeout=10)
    assert not loop.is_alive()
