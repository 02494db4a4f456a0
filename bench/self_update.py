"""Benchmark: the agent updating itself, end to end, with real builds and processes.

Usage (from the repo root):

    .venv/bin/python bench/self_update.py [--work /tmp/uptend-bench-self]

What it does: builds a wheelhouse of the source tree (0.1.0) and one of a bumped copy
(0.2.0), starts a real server, installs 0.1.0 with `uptend agent install`, runs it through
its launcher (by a stand-in for systemd's Restart=always) with one managed app, publishes
0.2.0 with `uptend release publish-agent` at a 1 s poll, and measures:

- seconds from publish-agent to 0.2.0 checked in (its version on the server, its process
  under PREFIX/versions/0.2.0), split into what the agent spent staging (fetch, offline
  environment build, trial: read from its update log) and the rest;
- the app's downtime: its pid before and after, and whether it was alive at every 50 ms
  sample during the switch (target: the same pid, 0 s down);
- the resident agent's RSS (VmRSS) before and after the switch;
- the load average at the start and at the end (the machine may be shared).

The server is polled through the admin API in this process every 0.1 s (an `uptend` CLI
process per look would load the machine it measures).

Baseline in the same run: the time `pip install --no-index` takes to build the same
environment outside the agent (the floor of staging). Exits 0 whatever the figures are.
"""

import argparse
import contextlib
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import agent_builds  # noqa: E402
from tests.support.fleet import Fleet  # noqa: E402

from uptend.agent.selfupdate_env import build_env  # noqa: E402
from uptend.cli._client import Admin  # noqa: E402


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(0.1)


def steps(prefix: Path) -> dict[str, float]:
    """When each step of the agent's own update began (its update log: ISO time, message)."""
    out: dict[str, float] = {}
    for log in sorted((prefix / "data" / "logs" / "updates").glob("uptend-agent-*.log")):
        for line in log.read_text().splitlines():
            stamp, _, message = line.partition(" ")
            with contextlib.suppress(ValueError):
                at = datetime.fromisoformat(stamp).timestamp()
                for step in ("fetching", "staging", "staged", "switching", "healthy"):
                    if message.startswith(step):
                        out.setdefault(step, at)
    return out


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/uptend-bench-self"))
    args = parser.parse_args()
    work: Path = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    load_start = load()

    t = time.perf_counter()
    base = agent_builds.base_wheelhouse(work / "wh-1")
    wheelhouse_s = time.perf_counter() - t
    t = time.perf_counter()
    new = agent_builds.variant(base, work / "wh-2", "0.2.0")
    variant_s = time.perf_counter() - t
    t = time.perf_counter()
    build_env(base, work / "floor")
    floor_s = time.perf_counter() - t

    (work / "fleet").mkdir()
    with Fleet(work / "fleet") as fleet, Admin(fleet.url, fleet.admin_token) as admin:
        fleet.cli("group", "set", "default", "--app", "demo", "--poll-interval", "1")
        fleet.cli("group", "set", "default", "--app", "uptend-agent")
        fleet.publish("demo", "1.0")
        prefix = work / "prefix"
        t = time.perf_counter()
        fleet.cli(
            *("agent", "install", str(prefix), "--server", fleet.url, "--name", "b1"),
            *("--token", fleet.enroll_token, "--wheelhouse", str(base)),
        )
        install_s = time.perf_counter() - t
        cfg_file = prefix / "data" / "agent.json"
        cfg = json.loads(cfg_file.read_text())
        cfg["check_reboot"] = False
        cfg_file.write_text(json.dumps(cfg))
        service = agent_builds.ServiceStandIn(prefix, work / "agent.log")
        try:

            def agent_version() -> str:
                return str(admin.agent("b1").agent.agent_version)

            def on(version: str) -> bool:
                argv = service.agent_argv()
                return agent_version() == version and bool(argv) and f"/{version}/" in argv[0]

            run_file = prefix / "data" / "apps" / "demo" / "run.json"
            wait_until(lambda: on("0.1.0") and run_file.exists(), 60, "0.1.0 up")
            app_pid = int(json.loads(run_file.read_text())["pid"])
            time.sleep(3)  # let the resident settle before its RSS is read
            agent_pid = service.pids[-1]
            rss_before = rss_kib(agent_pid)

            down = [0]
            stop = threading.Event()

            def watch() -> None:
                while not stop.is_set():
                    try:
                        os.kill(app_pid, 0)
                    except ProcessLookupError:
                        down[0] += 1
                    stop.wait(0.05)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            t = time.perf_counter()
            fleet.cli("release", "publish-agent", "0.2.0", str(new))
            publish_s = time.perf_counter() - t
            wait_until(lambda: on("0.2.0"), 600, "0.2.0 checked in")
            switch_s = time.perf_counter() - t
            stop.set()
            watcher.join()
            time.sleep(3)
            rss_after = rss_kib(agent_pid)
            app_after = int(json.loads(run_file.read_text())["pid"])
            took = steps(prefix)
        finally:
            service.stop()
            for run in prefix.glob("data/apps/*/run.json"):
                with contextlib.suppress(OSError, ValueError, KeyError):
                    os.killpg(int(json.loads(run.read_text())["pid"]), 9)

    print("self-update benchmark (one host, 1 s poll)")
    print(f"  wheelhouse of the tree (pip wheel, deps from cache): {wheelhouse_s:6.1f} s")
    print(f"  wheel of a bumped copy (pip wheel --no-deps):        {variant_s:6.1f} s")
    print(f"  floor: one environment, pip --no-index:              {floor_s:6.1f} s")
    print(f"  uptend agent install (builds one environment):       {install_s:6.1f} s")
    print(f"  publish-agent -> 0.2.0 checked in:                   {switch_s:6.1f} s")
    print(f"    of which publish-agent itself (pack, sign, upload): {publish_s:6.1f} s")
    print(f"    = {switch_s / floor_s:.2f}x the floor of building its environment")
    spans = [
        ("fetching", "staging", "fetch + verify"),
        ("staging", "staged", "stage: build + trial"),
        ("staged", "switching", "staged -> switch"),
        ("switching", "healthy", "switch -> checked in"),
    ]
    for a, b, what in spans:
        if a in took and b in took:
            print(f"    {what + ':':<28} {took[b] - took[a]:6.1f} s  (the agent's update log)")
    print(f"  agent pid kept across the switch: {service.pids == [agent_pid]}")
    print(f"  app pid before/after: {app_pid}/{app_after}; samples down: {down[0]} (50 ms each)")
    print(f"  resident RSS before/after: {rss_before / 1024:.1f} / {rss_after / 1024:.1f} MiB")
    print(f"  figures: {sys.version.split()[0]}, {os.cpu_count()} cores")
    print(f"  load average (1, 5, 15 min) at start: {load_start}; at end: {load()}")


if __name__ == "__main__":
    main()
