"""The figures of bench/update.py: what the child timed, analysed, and the table printed."""

import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.baselines import FloorRun, MenderRun  # noqa: E402 - after the path that finds them
from bench.update_child import Span  # noqa: E402

TARGETS = {"update_vs_mender": 0.6, "update_vs_floor": 1.3, "rollback_vs_mender": 0.3}
RSS_TARGET_MB = 80.0
REMOVE_OLD = "off-path: remove an old synced version dir"


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
