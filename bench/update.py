"""Benchmark: uptend's update and rollback beside the physical floor and Mender, same run.

Usage (from the repo root):

    .venv/bin/python bench/update.py [--runs 3] [--cache /tmp/uptend-bench] [--no-mender]

What it does:

1. Builds the realistic bundle of shared/peers/make_bundles.sh (a venv of pinned packages
   installed with --no-compile, ~891 files / ~30 MB) as v1.0 and v1.1 (3 files edited, 1
   added), each with an `uptend.toml` (a tiny long-running command, probation 0; 1.1's
   command probe fails, so the update ends in a real rollback), into CACHE/bundles; reused
   when present.
2. Starts a real `uptend server` (tests/support/fleet.py's `Fleet`), publishes both versions through
   the CLI and enrolls one agent data dir per run.
3. Per run, in a child process (so its peak RSS is its own), drives uptend's own
   `AppDriver` the way the agent's loop does: the look-up the loop's job makes, then
   `start(signed)` and a `tick()` every `BUSY_TICK_S` (or as soon as a worker job ends), and
   one worker child per update, until the update has settled. Install
   1.0 (not timed), then 1.1: its probe fails and the driver rolls back to 1.0. Everything
   is timed through the driver's public `Observer` hook (agent/observe.py): the phases
   entered and the spans of fetch, verify, unpack, sync, stop, activate, start, journal.
4. The physical floor and Mender (bench/baselines.py); Mender is skipped with a message when it
   cannot be installed.

The measured child is bench/update_child.py, the analysis and the table bench/update_report.py.
It exits 0 whatever the figures are (a benchmark, not a test); non-zero only on errors.
"""

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.baselines import (  # noqa: E402 - after the path that finds them
    MB,
    RECIPE,
    FloorRun,
    Mender,
    MenderRun,
    build_bundles,
    ensure_mender,
    floor_run,
    say,
    static_server,
    tree_stats,
    wait_rusage,
)
from bench.update_child import APP  # noqa: E402
from bench.update_report import UptendRun, analyse, report  # noqa: E402
from tests.support.fleet import Fleet  # noqa: E402

CHILD = Path(__file__).resolve().parent / "update_child.py"


def uptend_run(agent_dir: Path, log: Path) -> UptendRun:
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(agent_dir)],
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        data = proc.stdout.read()
        proc.stdout.close()
        code, maxrss = wait_rusage(proc)
    if code != 0:
        raise RuntimeError(f"the uptend child exited {code}; see {log}")
    return analyse(json.loads(data), maxrss)


# -- main -------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/uptend-bench"))
    ap.add_argument("--no-mender", action="store_true", help="skip the Mender comparison")
    args = ap.parse_args()

    cache: Path = args.cache
    cache.mkdir(parents=True, exist_ok=True)
    bundles = build_bundles(cache)
    nfiles, size = tree_stats(bundles / "v1.0")
    bundle_note = f"bundle v1.0: {nfiles} files, {size / MB:.1f} MB ({bundles})"
    say(bundle_note)

    mender: Mender | None = None
    mender_note = "--no-mender given" if args.no_mender else ensure_mender()
    if mender_note is None:
        mender = Mender(cache, bundles, RECIPE)
    else:
        say(f"mender: skipped ({mender_note})")

    work = cache / "run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    ups: list[UptendRun] = []
    floors: list[FloorRun] = []
    menders: list[MenderRun] = []
    try:
        with Fleet(work) as fleet, contextlib.ExitStack() as stack:
            say(f"uptend server at {fleet.url}; publishing 1.0 and 1.1")
            fleet.assign(APP, poll=1.0)
            for v in ("1.0", "1.1"):
                t = time.perf_counter()
                fleet.cli("release", "publish", APP, v, str(bundles / f"v{v}"))
                say(f"  published {v} in {time.perf_counter() - t:.1f} s")
            hosts = [fleet.add_host(f"agent-{i}") for i in range(1, args.runs + 1)]
            base = stack.enter_context(static_server(mender.art)) if mender else ""
            for i, host in enumerate(hosts, 1):
                up = uptend_run(host.dir, work / f"{host.name}.child.log")
                ups.append(up)
                fl = floor_run(up.info["url"], up.info["sha256"], work / "floor")
                floors.append(fl)
                line = (
                    f"run {i}: uptend update {up.update_s:.3f} s, rollback {up.rollback_s:.3f} s,"
                    f" peak {up.peak_rss_mb:.1f} MB; floor {fl.total_s:.3f} s"
                )
                if mender is not None:
                    mr = mender.run_once(base)
                    menders.append(mr)
                    line += f"; mender install {mr.install_s:.3f} s, rollback {mr.rollback_s:.3f} s"
                say(line)
    finally:
        if mender is not None:
            mender.close()
    info = ups[0].info
    bundle_note += (
        f"; target {info['length'] / MB:.2f} MB .tar.gz, {info['files']} entries,"
        f" {info['unpacked_size'] / MB:.1f} MB unpacked"
    )
    report(ups, floors, menders, mender_note, bundle_note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
