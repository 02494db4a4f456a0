"""Benchmark: check-ins/s with the rate limits and the input bounds, against neither, same run.

Usage (from the repo root):

    .venv/bin/python bench/auth.py [--duration 5] [--rounds 5] [--connections 64]
                                   [--no-postgresql]

Per database (SQLite, and PostgreSQL at $UPTEND_BENCH_PG): one server data dir with 2,000
agents seeded by SQL and one release (the setup of bench/checkin.py, whose helpers this
reuses), served at once by two processes sharing it:

- "with": `uptend server run` as shipped, with the default rate limits
  (UPTEND_AUTH_FAILURES_PER_MIN=60, UPTEND_ENROLLS_PER_MIN=1200) and the input bounds (the
  request body cap, the check-in's credential checked before its body is read);
- "without": bench/unbounded_server.py, the same command with both limits set to 0 (off),
  the body cap removed and the check-in parsing its body before it authenticates.

The pydantic field constraints of the check-in's schema stay in both (they are the schema).
Before measuring, the run shows that the control really is unbounded: a stranger's body that
is not JSON is refused 401 unread by "with" and parsed (422) by "without"; a body over the cap
is 413 on "with" and read on "without".

Each round measures both once (idle check-ins, wrk rotating over all agents' credentials,
server pinned to CPU 0, wrk to CPU 1), in an order swapped every round, each after the other
one's batched last-seen write has landed. Target: the median over rounds of with/without
(two runs of one round) >= 95 %.

It exits 0 whatever the figures are (a benchmark, not a test); non-zero only on errors.
"""

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.checkin import PG_ADMIN_URL, Point, loadavg, run_point, say, shown
from bench.checkin_load import lua_script, warm_up
from bench.checkin_setup import UPTEND, Uptend, drained, idle_body, publish_one, serving
from tests.support.pg import fresh_database

TARGET = 0.95
OFF = {"UPTEND_AUTH_FAILURES_PER_MIN": "0", "UPTEND_ENROLLS_PER_MIN": "0"}
ON = {"UPTEND_AUTH_FAILURES_PER_MIN": "60", "UPTEND_ENROLLS_PER_MIN": "1200"}
UNBOUNDED = [sys.executable, str(Path(__file__).resolve().parent / "unbounded_server.py")]
OVER_THE_CAP = 5 * 1024 * 1024  # the default cap is 4 MiB


def answers(url: str) -> tuple[int, int]:
    """Status of a stranger's non-JSON check-in, and of one over the body cap."""
    headers = {"Content-Type": "application/json"}
    with httpx.Client(base_url=url, timeout=60) as http:
        garbage = http.post("/api/v1/checkin", content=b"not json", headers=headers)
        large = http.post("/api/v1/checkin", content=b"x" * OVER_THE_CAP, headers=headers)
    return garbage.status_code, large.status_code


def run(
    stack: contextlib.ExitStack,
    dialect: str,
    database_url: str,
    root: Path,
    args: argparse.Namespace,
) -> list[float]:
    say(f"\nidle check-ins on {dialect}, 2,000 agents, 1 release:")
    up = Uptend(root / dialect, database_url)
    up.seed_agents(2000)
    urls = {
        "with": stack.enter_context(
            serving([*UPTEND, "server", "run", str(up.dir), "--port", "0"], ON)
        ),
        "without": stack.enter_context(serving([*UNBOUNDED, str(up.dir), "0"], OFF)),
    }
    publish_one(urls["with"], up.admin_token, root / dialect)
    seen = {label: answers(url) for label, url in urls.items()}
    say(
        f"  a stranger's non-JSON body / a body over the cap: with {seen['with']},"
        f" without {seen['without']}"
    )
    if seen["with"] != (401, 413) or 401 in seen["without"] or 413 in seen["without"]:
        raise RuntimeError(f"the two servers are not what they should be: {seen}")
    scripts = {}
    for label, url in urls.items():
        body = idle_body(url, up.creds[0])
        warm_up(url, up.creds, body)  # every agent known to both processes
        drained(url, up.admin_token)
        scripts[label] = lua_script(root, up.creds, body, change=False)
    figures: dict[str, list[Point]] = {"with": [], "without": []}
    for r in range(args.rounds):
        order = ("with", "without") if r % 2 == 0 else ("without", "with")
        for label in order:
            what = f"round {r + 1}: {label} limits and bounds"
            figures[label].append(run_point(up, urls[label], scripts[label], what, args))
    ratios = [w.rps / wo.rps for w, wo in zip(figures["with"], figures["without"], strict=True)]
    say(
        f"  {dialect}: with / without: {statistics.median(ratios):.3f}"
        f" (rounds: {shown(ratios, '.3f')})"
    )
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5, help="runs with and without, each")
    parser.add_argument("--no-postgresql", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    say(f"loadavg at start: {loadavg()}")
    with (
        tempfile.TemporaryDirectory(prefix="uptend-bench-auth-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        root = Path(tmp)
        ratios = {"sqlite": run(stack, "sqlite", "", root, args)}
        if not args.no_postgresql:
            url = stack.enter_context(fresh_database(PG_ADMIN_URL, "uptend_bench_auth"))
            ratios["postgresql"] = run(stack, "postgresql", url, root, args)
    say("\ntargets (median over rounds of with/without, two runs of one round each):")
    for dialect, values in ratios.items():
        ratio = statistics.median(values)
        verdict = "ok" if ratio >= TARGET else "MISSED"
        say(
            f"  {dialect}: with/without rate limits and bounds {ratio:.3f}"
            f" (rounds: {shown(values, '.3f')}) (>= {TARGET:.2f}) {verdict}"
        )
    say(f"loadavg at end: {loadavg()}")


if __name__ == "__main__":
    main()
