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

It exits 0 whatever the figures are (a benchmark, not a test); non-zero only on errors.
"""

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    settle,
    static_server,
    tree_stats,
    wait_rusage,
)
from tests.support.fleet import Fleet  # noqa: E402

APP = "bench"
TARGETS = {"update_vs_mender": 0.6, "update_vs_floor": 1.3, "rollback_vs_mender": 0.3}
RSS_TARGET_MB = 80.0
REMOVE_OLD = "off-path: remove an old synced version dir"


# -- the child: uptend's own AppDriver, ticked as the loop ticks it -------------------------

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


@dataclass
class UptendRun:
    update_s: float  # start(1.1) -> 1.1 started on the durable switch
    rollback_s: float  # rolling_back entered -> 1.0 started again
    steps: dict[str, float]
    rss_before_mb: float
    peak_rss_mb: float
    peak_is_update_only: bool
    child_maxrss_mb: float
    info: dict[str, Any] = field(default_factory=dict)


def analyse(out: dict[str, Any], maxrss: float) -> UptendRun:
    spans: list[Span] = [(str(n), v, float(s), float(e)) for n, v, s, e in out["spans"]]
    marks = {(str(p), v): (float(t), float(c)) for p, v, t, c in out["marks"]}

    def one(name: str, version: str | None) -> Span:
        found = [s for s in spans if s[:2] == (name, version)]
        if len(found) != 1:
            raise RuntimeError(f"expected one {name} span of {version}, got {found}")
        return found[0]

    def within(name: str, start: float, end: float) -> float:
        return sum(e - s for n, _, s, e in spans if n == name and start <= s and e <= end)

    def took(span: Span) -> float:
        return span[3] - span[2]

    t0 = float(out["t0"])
    fetch, stage = one("fetch", "1.1"), one("stage", "1.1")
    stop, activate, start = one("stop", "1.1"), one("activate", "1.1"), one("start", "1.1")
    switched = start[3]
    back = marks[("rolling_back", "1.1")][0]
    back_started = one("start", "1.0")[3]
    cpu_staging = marks[("activating", "1.1")][1] - marks[("staging", "1.1")][1]
    update_s = switched - t0
    work = sum(map(took, (fetch, stage, stop, activate, start)))
    journal = within("journal", t0, switched)
    steps = {
        "fetch: HTTP into the staging file + fsync": within("download", *fetch[2:]),
        "fetch: sha256 re-read (verify #1)": within("verify", *fetch[2:]),
        "fetch: rename + fsync staging dir": took(fetch)
        - within("download", *fetch[2:])
        - within("verify", *fetch[2:]),
        "stage: sha256 re-read (verify #2)": within("verify", *stage[2:]),
        "stage: archive.unpack (gunzip + checks + write)": within("unpack", *stage[2:]),
        "stage: syncfs": within("sync", *stage[2:]),
        "stage: manifest + rename + fsync dir": took(stage)
        - within("verify", *stage[2:])
        - within("unpack", *stage[2:])
        - within("sync", *stage[2:]),
        "stage: CPU time of the process while staging": cpu_staging,
        "switch: stop 1.0 app (SIGTERM -> gone, across ticks)": took(stop),
        "switch: activate (point current: rename + fsync)": took(activate),
        "switch: start 1.1 app": took(start),
        "journal writes on the loop (x3)": journal,
        "loop: waiting for the next tick (hand-offs)": update_s - work - journal,
        "probation of 1.1: probe `false` -> judged unhealthy": back
        - marks[("probation", "1.1")][0],
        "rollback: stop 1.1 app": took(one("stop", "1.0")),
        "rollback: activate 1.0": took(one("activate", "1.0")),
        "rollback: start 1.0 app": took(one("start", "1.0")),
        "rollback verified (1.0 judged) -> idle": marks[("idle", "1.0")][0] - back_started,
        "start(1.1) -> settled (update, probation, rollback)": float(out["t_end"]) - t0,
        "off-path: clean-up job (a worker, after the update)": within(
            "cleanup", t0, float(out["t_end"])
        ),
        REMOVE_OLD: float(out["remove_old_s"]),
    }
    return UptendRun(
        update_s=update_s,
        rollback_s=back_started - back,
        steps=steps,
        rss_before_mb=out["rss_before_mb"],
        peak_rss_mb=out["peak_rss_mb"],
        peak_is_update_only=out["peak_is_update_only"],
        child_maxrss_mb=maxrss,
        info={k: out[k] for k in ("url", "length", "sha256", "unpacked_size", "files")},
    )


def uptend_run(agent_dir: Path, log: Path) -> UptendRun:
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", str(agent_dir)],
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


# -- report -----------------------------------------------------------------------------------


def fmt_runs(values: list[float], unit: str = "s") -> str:
    digits = 3 if unit == "s" else 1
    return " / ".join(f"{v:.{digits}f}" for v in values)


def verdict(value: float, limit: float) -> str:
    return "MET" if value <= limit else "MISSED"


def report(
    ups: list[UptendRun],
    floors: list[FloorRun],
    menders: list[MenderRun],
    mender_note: str | None,
    bundle_note: str,
) -> None:
    rows: list[tuple[str, str, str, str]] = []

    def series(what: str, values: list[float], target: str = "", *, unit: str = "s") -> float:
        """A row with the median (max for MB) and every run; returns the figure shown."""
        value = max(values) if unit == "MB" else statistics.median(values)
        digits = 3 if unit == "s" else 1
        rows.append((what, f"{value:.{digits}f} {unit}", fmt_runs(values, unit), target))
        return value

    def ratio(what: str, value: float, limit: float) -> None:
        rows.append((what, f"{value:.2f} x", "", f"<= {limit} x: {verdict(value, limit)}"))

    upd = series(
        "uptend update 1.0->1.1 (start -> 1.1 started, durable)", [u.update_s for u in ups]
    )
    rb = series("uptend rollback (rolling_back -> 1.0 started)", [u.rollback_s for u in ups])
    fl = series("physical floor (urllib+sha256, tarfile, syncfs)", [f.total_s for f in floors])
    series("  floor: download + sha256 to file", [f.download_s for f in floors])
    series("  floor: tarfile.extractall", [f.extract_s for f in floors])
    series("  floor: syncfs", [f.syncfs_s for f in floors])
    mender_install = mender_rollback = float("nan")
    if menders:
        mender_install = series(
            "Mender install 1.1 over HTTP (standalone)", [m.install_s for m in menders]
        )
        series("Mender commit", [m.commit_s for m in menders])
        mender_rollback = series("Mender rollback", [m.rollback_s for m in menders])
        series("Mender peak RSS, install", [m.install_rss_mb for m in menders], unit="MB")
        series("Mender peak RSS, rollback", [m.rollback_rss_mb for m in menders], unit="MB")
    peak_what = (
        "uptend agent peak RSS during update+rollback"
        if all(u.peak_is_update_only for u in ups)
        else "uptend agent peak RSS (whole child)"
    )
    peak = max(u.peak_rss_mb for u in ups)
    rss_target = f"<= {RSS_TARGET_MB:.0f} MB: {verdict(peak, RSS_TARGET_MB)}"
    series(peak_what, [u.peak_rss_mb for u in ups], rss_target, unit="MB")
    series(
        "  RSS just before the update (1.0 installed)", [u.rss_before_mb for u in ups], unit="MB"
    )
    series("  child lifetime ru_maxrss", [u.child_maxrss_mb for u in ups], unit="MB")
    ratio("ratio update / floor", upd / fl, TARGETS["update_vs_floor"])
    if menders:
        ratio("ratio update / Mender install", upd / mender_install, TARGETS["update_vs_mender"])
        ratio(
            "ratio rollback / Mender rollback", rb / mender_rollback, TARGETS["rollback_vs_mender"]
        )
    else:
        rows.append(("ratios against Mender", "skipped", "", mender_note or ""))

    print(bundle_note)
    print(f"runs: {len(ups)}; figures are medians (peak RSS: max)\n")
    header = ("what", "value", "runs", "target")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for i, r in enumerate([header, *rows]):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    if menders:
        print(
            "\nnote: Mender's `directory` module removes the old tree in install (after tar'ing"
            " it as a backup) and the new one in rollback (rm -rf); removing a synced 30 MB"
            f" tree costs {statistics.median(u.steps[REMOVE_OLD] for u in ups):.2f} s"
            " on this disk (row 'off-path' below), which weighs on Mender's figures here."
        )
    print("\nwhere uptend's time goes (medians, s; from the driver's Observer hook):")
    for key in ups[0].steps:
        vals = [u.steps[key] for u in ups]
        print(f"  {key:<56} {statistics.median(vals):7.3f}   ({fmt_runs(vals)})")


# -- main -------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/uptend-bench"))
    ap.add_argument("--no-mender", action="store_true", help="skip the Mender comparison")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child)))
        return 0

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
