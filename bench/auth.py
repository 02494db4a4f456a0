"""Benchmark: authenticated check-ins/s with the rate limits on against the same with them off.

Usage (from the repo root):

    .venv/bin/python bench/auth.py [--duration 5] [--connections 64] [--rounds 2] [--postgresql]

One run, one server data dir with 2,000 agents seeded by SQL and one release (the setup of
bench/checkin.py, whose helpers this reuses). The server is started alternately with the
default limits (`UPTEND_AUTH_FAILURES_PER_MIN=60`, `UPTEND_ENROLLS_PER_MIN=1200`) and with
both set to 0 (off), `--rounds` times each, and every run measures idle check-ins with wrk
rotating over all agents' credentials (server pinned to CPU 0, wrk to CPU 1). Alternating
runs keep drift from other work on the machine out of the ratio. Target: with >= 95 % of
without. The input bounds of the check-in are part of both runs (they cannot be turned off).

It exits 0 whatever the figures are (a benchmark, not a test); non-zero only on errors.
"""

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.checkin import (
    PG_ADMIN_URL,
    UPTEND,
    Uptend,
    fresh_database,
    measure,
    publish_one,
    say,
    serving,
)

TARGET = 0.95
OFF = {"UPTEND_AUTH_FAILURES_PER_MIN": "0", "UPTEND_ENROLLS_PER_MIN": "0"}
ON = {"UPTEND_AUTH_FAILURES_PER_MIN": "60", "UPTEND_ENROLLS_PER_MIN": "1200"}


def run(dialect: str, database_url: str, root: Path, args: argparse.Namespace) -> float:
    say(f"\nidle check-ins on {dialect}, 2,000 agents, 1 release:")
    up = Uptend(root / dialect, database_url)
    up.seed_agents(2000)
    cmd = [*UPTEND, "server", "run", str(up.dir), "--port", "0"]
    with serving(cmd, ON) as url:
        publish_one(url, up.admin_token, root / dialect)
    figures: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(args.rounds):
        for label, env in (("on", ON), ("off", OFF)):
            with serving(cmd, env) as url:
                point = measure(up, url, root, f"rate limits {label}", args, change=False)
                figures[label].append(point.rps)
    ratio = statistics.mean(figures["on"]) / statistics.mean(figures["off"])
    say(f"  {dialect}: with limits / without: {ratio:.3f} (target >= {TARGET:.2f})")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="runs with and without, each")
    parser.add_argument("--postgresql", action="store_true", help="also on PostgreSQL")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    with tempfile.TemporaryDirectory(prefix="uptend-bench-auth-") as tmp:
        root = Path(tmp)
        ratios = {"sqlite": run("sqlite", "", root, args)}
        if args.postgresql:
            with fresh_database(PG_ADMIN_URL, "uptend_bench_auth") as url:
                ratios["postgresql"] = run("postgresql", url, root, args)
    say("\ntargets:")
    for dialect, ratio in ratios.items():
        verdict = "ok" if ratio >= TARGET else "MISSED"
        say(f"  {dialect}: with/without rate limits {ratio:.3f} (>= {TARGET:.2f}) {verdict}")


if __name__ == "__main__":
    main()
