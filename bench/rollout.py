"""Benchmark: seconds from `release publish` to every host on the new version, staged or not.

In-process hosts (tests/support/sim.py: the agent's decision code and update machine over real
HTTP) each check in every `--poll` seconds from a random phase, against a real server process
on SQLite. Figures:

1. a one-wave plan (`--waves 100`): publish -> 100 % on the new version, against the target
   1.1 x (poll + splay): a host learns of a release at its next check-in;
2. a three-wave plan (`--waves 5,25,100`, no soak): seconds from publish to each wave done.

Not measured here (see the closing note of issue 9): check-ins/s with rollouts active against
a FastAPI hello-world (bench/checkin.py measures the check-in path without rollouts).

Run: .venv/bin/python bench/rollout.py [--hosts 1000] [--poll 5]
"""

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.fleet import Fleet, make_release
from tests.support.sim import SimFleet, SimHost

APP = "benchapp"


def say(msg: str) -> None:
    print(msg, flush=True)


async def poll_forever(sims: SimFleet, host: SimHost, poll: float, stop: asyncio.Event) -> None:
    await asyncio.sleep(random.uniform(0, poll))
    while not stop.is_set():
        started = time.monotonic()
        await sims.round([host])
        await asyncio.sleep(max(0.0, poll - (time.monotonic() - started)))


async def until_all(sims: SimFleet, version: str, names: set[str], limit_s: float) -> float:
    """Seconds until every host in `names` runs `version` (checked every 50 ms)."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        if all(h.installed(APP) == version for h in sims.hosts if h.name in names):
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"{version} did not reach every host within {limit_s:.0f} s")


async def scenario(fleet: Fleet, args: argparse.Namespace) -> None:
    def publish(version: str) -> None:
        src = make_release(fleet.root / "r", version)
        fleet.cli("release", "publish", APP, version, str(src))

    fleet.cli("group", "set", "bench", "--app", APP, "--poll-interval", str(args.poll))
    publish("1.0")
    async with SimFleet(fleet.url, fleet.enroll_token, concurrency=64) as sims:
        await sims.enroll(args.hosts, group="bench")
        stop = asyncio.Event()
        pollers = [asyncio.create_task(poll_forever(sims, h, args.poll, stop)) for h in sims.hosts]
        everyone = {h.name for h in sims.hosts}
        await until_all(sims, "1.0", everyone, 120)
        await asyncio.sleep(args.poll)  # the server hears of it from every host
        before = sims.checkins

        fleet.cli("channel", "set", APP, "stable", "--waves", "100", "--splay", str(args.splay))
        t0 = time.monotonic()
        await asyncio.to_thread(publish, "2.0")
        published = time.monotonic() - t0
        took = await until_all(sims, "2.0", everyone, 120) + published
        target = 1.1 * (args.poll + args.splay)
        say(f"one wave: publish -> 100 % on 2.0 in {took:.2f} s (target <= {target:.2f} s)")

        fleet.cli("channel", "set", APP, "stable", "--waves", "5,25,100")
        preview = fleet.json("rollout", "preview", APP, "--channel", "stable")
        t0 = time.monotonic()
        await asyncio.to_thread(publish, "3.0")
        so_far: set[str] = set()
        for wave in preview["waves"]:
            so_far |= set(wave["agents"])
            await until_all(sims, "3.0", so_far, 300)
            say(
                f"three waves: wave {wave['wave']} ({wave['percent']:g} %, {len(so_far)} hosts)"
                f" done {time.monotonic() - t0:.2f} s after publish"
            )
        rate = (sims.checkins - before) / (time.monotonic() - t0 + took)
        say(f"check-ins served while rolling out: {rate:.0f}/s from {args.hosts} hosts")
        stop.set()
        await asyncio.gather(*pollers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--poll", type=float, default=5.0)
    parser.add_argument("--splay", type=float, default=0.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d, Fleet(Path(d)) as fleet:
        asyncio.run(scenario(fleet, args))


if __name__ == "__main__":
    main()
