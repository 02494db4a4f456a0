"""The measured side of bench/update.py: uptend's own AppDriver, ticked as the loop ticks it.

`python bench/update_child.py AGENT_DIR` installs 1.0, then updates to 1.1 (whose probe
fails, so the driver rolls back to 1.0), and prints what it timed as one JSON object on
stdout. It runs in its own process so that its peak RSS is its own.
"""

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.baselines import MB, settle  # noqa: E402 - after the path that finds them

APP = "bench"

Span = tuple[str, str | None, float, float]  # name, version, start, end (perf_counter)
Mark = tuple[str, str | None, float, float]  # phase entered, version, perf_counter, CPU s


class Recorder:
    """The bench's `Observer`: every phase entered and every span, in order."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.marks: list[Mark] = []

    def phase(self, app: str, phase: str, version: str | None) -> None:
        self.marks.append((phase, version, time.perf_counter(), time.process_time()))

    def span(self, app: str, name: str, version: str | None, start: float, end: float) -> None:
        self.spans.append((name, version, start, end))


def reset_peak_rss() -> bool:
    """Reset VmHWM of this process (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def proc_status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024 / MB
    return float("nan")


def child(agent_dir: Path) -> dict[str, Any]:
    """Install 1.0, then update to 1.1 and roll back to 1.0 through the driver; time it."""
    # Imported here: the parent does not need them, and the child's RSS is the agent's
    # (the runner too: the real agent process holds it and its control client).
    from uptend.agent import artifacts, decide, files, lookup
    from uptend.agent import config as agent_config
    from uptend.agent.download import target_url
    from uptend.agent.driver import AppDriver
    from uptend.agent.installers import Signed, supported
    from uptend.agent.layout import Layout
    from uptend.agent.runner import BUSY_TICK_S
    from uptend.agent.supervisor import Supervisor
    from uptend.agent.worker import Workers
    from uptend.protocol.targets import ArchiveFormat, target_path

    layout = Layout(agent_dir)
    cfg = agent_config.load(layout)
    layout.make()
    supervisor = Supervisor(layout)
    recorder = Recorder()

    def facts() -> decide.Facts:
        return decide.Facts(time.time(), 0.5, cfg.poll_interval_s, supported())

    woken = threading.Event()  # as the loop: a worker job that ends wakes it
    workers = Workers(on_done=woken.set)
    driver = AppDriver(layout, APP, supervisor, cfg.targets_url, facts, workers, observer=recorder)

    def look_up(version: str) -> Signed:
        """What the loop's look-up job hands the driver (the directive names the path)."""
        tuf = lookup.session(layout, cfg.metadata_url)
        try:
            return lookup.find(tuf, APP, version, target_path(APP, version, ArchiveFormat.TAR_GZ))
        finally:
            tuf.close()

    def update(signed: Signed) -> None:
        """`start`, then tick as `Agent.run` does while busy, until the update has settled."""
        driver.start(signed.custom.version, artifacts.record(signed))
        deadline = time.monotonic() + 600
        while driver.busy or driver.action is not None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the update did not settle: {driver.plan}")
            woken.wait(BUSY_TICK_S)
            woken.clear()
            driver.tick()
            supervisor.tick([] if driver.owns_process else [APP])
            workers.close_idle()  # as the loop does: one worker child per update

    try:
        driver.resume()
        update(look_up("1.0"))
        if driver.plan.current != "1.0" or supervisor.running_version(APP) != "1.0":
            raise RuntimeError(f"installing 1.0 failed: {driver.plan}")
        signed = look_up("1.1")
        settle()  # nothing from the 1.0 install left for the timed part to pay for
        rss_before = proc_status_mb("VmRSS")
        hwm_reset = reset_peak_rss()
        recorder.spans.clear()
        recorder.marks.clear()
        t0 = time.perf_counter()
        update(signed)
        t_end = time.perf_counter()
        peak = proc_status_mb("VmHWM")
        versions = sorted(p.name for p in layout.versions(APP).iterdir())
        if driver.plan.current != "1.0" or files.read_current(layout.app_dir(APP)) != "1.0":
            raise RuntimeError(f"rollback did not end on 1.0: {driver.plan}")
        if [(p.outcome, p.version) for p in driver.plan.pending][-1:] != [("rolled_back", "1.1")]:
            raise RuntimeError(f"no rolled_back report: {driver.plan.pending}")
        if "1.1" not in versions:
            raise RuntimeError(f"1.1 was not unpacked: {versions}")
        if supervisor.running_version(APP) != "1.0":
            raise RuntimeError("1.0 is not running after the rollback")
        # What the clean-up job does to an old version after a later update: remove a
        # synced tree. Off the loop (a worker job) and off the update's path.
        t = time.perf_counter()
        files.remove_tree(layout.version_dir(APP, "1.1"))
        remove_old_s = time.perf_counter() - t
        return {
            "t0": t0,
            "t_end": t_end,
            "spans": recorder.spans,
            "marks": recorder.marks,
            "rss_before_mb": rss_before,
            "peak_rss_mb": peak,
            "peak_is_update_only": hwm_reset,
            "remove_old_s": remove_old_s,
            "url": target_url(cfg.targets_url, signed.info),
            "length": signed.info.length,
            "sha256": signed.info.hashes["sha256"],
            "unpacked_size": signed.custom.unpacked_size,
            "files": signed.custom.files,
        }
    finally:
        supervisor.stop_all()


if __name__ == "__main__":
    print(json.dumps(child(Path(sys.argv[1]))))
