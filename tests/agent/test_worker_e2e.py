"""The fetch runs in a worker child of the real agent: kill -9 of the child alone.

The agent must take the dead child as a transient fault (never its own crash), keep the
bytes already fetched, and resume them with a Range request after the backoff.
"""

import os
import signal
from pathlib import Path

from tests.e2e.test_hostile import APP, PROBATION, artifact, host_on_1_0, proxy, via
from tests.support.fleet import Fleet, make_release, wait_until
from tests.support.tamper_proxy import TamperProxy

__all__ = ["proxy"]

BIG = 4 << 20  # random bytes: they do not compress
RATE = 512 << 10  # bytes per second through the proxy


def worker_children(agent_pid: int, kind: str) -> list[int]:
    """Pids of the agent's live `python -m uptend.agent.child <kind>` processes."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ours = int(stat[1]) == agent_pid and stat[0] != "Z"
        if ours and b"uptend.agent.child" in cmdline and kind.encode() in cmdline:
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
    [child] = worker_children(agent.pid, "fetch")
    os.kill(child, signal.SIGKILL)
    wait_until(lambda: not worker_children(agent.pid, "fetch") or part() == 0, what="child gone")
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
