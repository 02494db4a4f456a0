"""Benchmark: seconds from `release publish` to every host on the new version, staged or not.

In-process hosts (tests/support/sim.py: the agent's decision code and update machine over real
HTTP) each check in every `--poll` seconds from a random phase (and at once when a report is
pending, as the agent does), against a real server process
on SQLite. Figures:

1. a one-wave plan (`--waves 100`): publish -> 100 % on the new version, against the target
   1.1 x (poll + splay): a host learns of a release at its next check-in;
2. a three-wave plan (`--waves 5,25,100`, no soak): seconds from publish to each wave done.

3. check-ins/s (wrk, 64 connections, rotating over every host's credential, each sending the
   check-in an in-process host on the channel head sends, with the generation of the
   directives it holds, as the agent does), in the same run and the same
   rounds: a FastAPI hello-world (`GET /hello`), the server with no rollout live, and the
   server with one live (a 5,100 plan soaking wave 1: 95 % of the hosts held, 5 % let
   through). Each server point is measured after one unmeasured pass over every credential
   (the steady state: a new generation makes each agent's next check-in a recorded one).
   Targets: with >= 40 % of the hello-world, and no worse than without.

The machine load (`uptime`) is printed beside the figures: on a shared machine they move.

Run: .venv/bin/python bench/rollout.py [--hosts 1000] [--poll 5] [--rounds 3]
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.checkin_load import lua_script, wrk
from bench.checkin_setup import BASELINE, serving
from tests.support.fleet import Fleet, make_release
from tests.support.sim import SimFleet, SimHost

from uptend.agent import control, wire

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
    async with SimFleet(
        fleet.url, fleet.enroll_token, concurrency=64, reports_at_once=True
    ) as sims:
        for _ in range(args.hosts // 10):  # a few at a time: SQLite serializes enrollments
            await sims.enroll(10, group="bench")
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
        after = await until_all(sims, "2.0", everyone, 120)
        took = after + published
        target = 1.1 * (args.poll + args.splay)
        say(
            f"one wave: 100 % on 2.0 {after:.2f} s after the release went live"
            f" (target <= {target:.2f} s); {took:.2f} s counting the `uptend release publish`"
            f" command itself ({published:.2f} s: a CLI process, signing, the upload)"
        )

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
        wanted = args.hosts / args.poll
        say(
            f"check-ins served while rolling out: {rate:.0f}/s from {args.hosts} hosts"
            f" ({wanted:.0f}/s keeps every host at its poll: fewer, and the hosts lag)"
        )
        stop.set()
        await asyncio.gather(*pollers)
        await asyncio.to_thread(throughput, fleet, sims, args, publish, asyncio.get_running_loop())


def throughput(
    fleet: Fleet,
    sims: SimFleet,
    args: argparse.Namespace,
    publish: object,
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Check-ins/s: hello-world, no rollout live, one live; the same rounds, same run."""
    assert callable(publish)
    creds = [h.credential for h in sims.hosts]
    root = fleet.root
    script = lua_script(root, creds, held(sims), change=False)
    baseline = root / "baseline.py"
    baseline.write_text(BASELINE)
    with contextlib.ExitStack() as stack:
        hello_url = stack.enter_context(serving([sys.executable, str(baseline)]))
        say(f"check-ins/s (wrk, 64 connections, {args.duration:g} s a point; load {load()}):")
        hello: list[float] = []
        idle: list[float] = []
        wrk(f"{fleet.url}/api/v1/checkin", script, args.duration, 64)  # warm: each agent recorded
        for k in range(args.rounds):
            hello.append(wrk(f"{hello_url}/hello", None, args.duration, 64)[0])
            idle.append(wrk(f"{fleet.url}/api/v1/checkin", script, args.duration, 64)[0])
            say(f"  round {k + 1}: GET /hello {hello[-1]:.0f}, no rollout live {idle[-1]:.0f}")
        fleet.cli("channel", "set", APP, "stable", "--waves", "5,100", "--soak", "3600")
        publish("4.0")
        say(f"  a rollout of 4.0 is live (5,100, soaking): load {load()}")
        # the directives of the new generation, fetched on the hosts' own event loop
        asyncio.run_coroutine_threadsafe(sims.round([sims.hosts[0]]), loop).result()
        script = lua_script(root, creds, held(sims), change=False)
        # Warm, as above: the new generation makes each agent's next check-in a recorded one,
        # and wave 1's hosts are let through (a write each), once.
        wrk(f"{fleet.url}/api/v1/checkin", script, args.duration, 64)
        live: list[float] = []
        hello2: list[float] = []
        for k in range(args.rounds):
            hello2.append(wrk(f"{hello_url}/hello", None, args.duration, 64)[0])
            live.append(wrk(f"{fleet.url}/api/v1/checkin", script, args.duration, 64)[0])
            say(f"  round {k + 1}: GET /hello {hello2[-1]:.0f}, rollout live {live[-1]:.0f}")
        status = fleet.json("rollout", "status", APP)
        say(f"  rollout {status['version']} {status['state']}, wave {status['wave']}")
        if os.environ.get("BENCH_DEBUG"):
            say(fleet.server_log()[-3000:])
    h, i, lv = statistics.median(hello + hello2), statistics.median(idle), statistics.median(live)
    say(
        f"medians: hello {h:.0f}/s, no rollout {i:.0f}/s ({i / h:.0%} of hello),"
        f" rollout live {lv:.0f}/s ({lv / h:.0%} of hello, {lv / i:.0%} of no rollout);"
        f" targets: >= 40 % of hello, >= 100 % of no rollout"
    )


def held(sims: SimFleet) -> dict[str, object]:
    """What a host on 3.0 sends: its state and the generation of the directives it holds.

    Every host runs 3.0 with the same state, so one body serves every credential.
    """
    host = sims.hosts[0]
    body: dict[str, object] = json.loads(
        wire.encode(control.holding(host.checkin()[0], host.directives))
    )
    return body


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--poll", type=float, default=5.0)
    parser.add_argument("--splay", type=float, default=0.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d, Fleet(Path(d)) as fleet:
        asyncio.run(scenario(fleet, args))


if __name__ == "__main__":
    main()
