"""Benchmark: command latency over the long-poll, and the server's memory per held request.

Usage (from the repo root):

    .venv/bin/python bench/commands.py [--commands 50] [--held 2000,10000]

What it does (a real `uptend server run` on SQLite, agents seeded by SQL as in
bench/checkin_setup.py):

1. Latency, 1 agent: the measured agent is an in-process client doing what the resident
   agent does (hold `POST /api/v1/wait`; on a ring, check in; carry the command out; check
   in again with the ack), NOT the resident agent itself. Each of `--commands` commands is
   sent through the admin API (`POST /api/v1/commands`, what `uptend command send` calls);
   the time runs from that call's START (the agent has often acked before the call returns,
   so this is the conservative figure) to the server's answer to the check-in that carried
   the ack (the ack is then recorded). Median and p95.
2. The same with 2,000 other agents holding long-polls on the same server meanwhile.
3. Memory: the server's RSS (VmRSS) with every agent known to it (each checked in once)
   and no request held, then with 2,000 and 10,000 long-polls held: KB per held request.

The held long-polls are raw asyncio connections (one socket each, no thread): the point is
the server's cost, not the client's. It exits 0 whatever the figures are.
"""

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.checkin_setup import APP, UPTEND, Uptend, idle_body, publish_one  # noqa: E402

TARGETS = {"median_s": 0.3, "p95_s": 1.0, "kb_per_held": 75.0}
BATCH = 250  # connections opened at once (the listen backlog holds them meanwhile)


def say(msg: str) -> None:
    print(msg, flush=True)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def post(
    host: str, port: int, path: str, cred: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """One POST on its own connection; the status and the JSON answer."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        data = json.dumps(body).encode()
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {cred}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + data
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.decode().split("\r\n"):
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        payload = await reader.readexactly(length)
        return status, json.loads(payload)
    finally:
        writer.close()


class Held:
    """Agents holding a long-poll each, re-opened whenever answered, until `stop`."""

    def __init__(self, host: str, port: int, creds: list[str], generation: int) -> None:
        self.host, self.port, self.creds, self.generation = host, port, creds, generation
        self.open = 0
        self.rings = 0
        self.failures = 0
        self.stopping = False
        self.tasks: list[asyncio.Task[None]] = []

    async def _one(self, cred: str, opened: asyncio.Event) -> None:
        while not self.stopping:
            body = {"generation": self.generation, "wait_s": 55}
            try:
                task = asyncio.ensure_future(post(self.host, self.port, "/api/v1/wait", cred, body))
                await asyncio.sleep(0.05)  # the request is on its way: count it as held
                if not opened.is_set():
                    opened.set()
                self.open += 1
                status, answer = await task
                self.open -= 1
            except (OSError, asyncio.IncompleteReadError, ValueError):
                self.failures += 1
                self.open -= 1
                await asyncio.sleep(1)
                continue
            if status == 200 and answer.get("ring"):
                self.rings += 1
                await asyncio.sleep(1)  # a real agent would check in here

    async def start(self) -> None:
        for i in range(0, len(self.creds), BATCH):
            events = []
            for cred in self.creds[i : i + BATCH]:
                opened = asyncio.Event()
                events.append(opened)
                self.tasks.append(asyncio.create_task(self._one(cred, opened)))
            await asyncio.gather(*(e.wait() for e in events))

    async def stop(self) -> None:
        self.stopping = True
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def latency(url: str, token: str, cred: str, agent: str, count: int) -> list[float]:
    """Seconds from `POST /commands` to the ack's check-in answered, per command.

    Timed from the admin call's start, not its return: the agent often has the command (and
    has acked it) before the sender reads its answer, so this is the conservative figure.
    """
    host, port = url.removeprefix("http://").rsplit(":", 1)
    body = idle_body(url, cred)
    state = {k: body[k] for k in ("agent_version", "apps")}
    generation = body["generation"]
    sent_at: dict[int, float] = {}
    acked_at: dict[int, float] = {}
    done = asyncio.Event()

    async def agent_loop() -> None:
        while len(acked_at) < count:
            wait = {"generation": generation, "wait_s": 55}
            _, rang = await post(host, int(port), "/api/v1/wait", cred, wait)
            if not rang.get("ring"):
                continue
            _, got = await post(
                host, int(port), "/api/v1/checkin", cred, {**state, "generation": generation}
            )
            acks = [{"id": c["id"], "state": "done", "result": "ok"} for c in got["commands"]]
            if acks:
                check = {**state, "generation": generation, "acks": acks}
                await post(host, int(port), "/api/v1/checkin", cred, check)
                acked_at.update({a["id"]: time.monotonic() for a in acks})
                done.set()

    loop_task = asyncio.create_task(agent_loop())
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as admin:
        for _ in range(count):
            done.clear()
            await asyncio.sleep(0.05)  # the agent is back in its long-poll
            started = time.monotonic()
            command = {"action": "check-now", "agent": agent}
            response = await admin.post("/api/v1/commands", json=command)
            response.raise_for_status()
            sent_at[response.json()[0]["id"]] = started
            await asyncio.wait_for(done.wait(), timeout=30)
    await loop_task
    return [acked_at[i] - sent_at[i] for i in sent_at]


def figures(label: str, seconds: list[float]) -> None:
    seconds = sorted(seconds)
    median = statistics.median(seconds)
    p95 = seconds[min(len(seconds) - 1, round(0.95 * len(seconds)) - 1)]
    say(
        f"{label}: median {median * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms over {len(seconds)}"
        f" commands (targets: median < {TARGETS['median_s']} s, p95 < {TARGETS['p95_s']} s)"
    )


async def until_held(url: str, token: str, count: int, timeout_s: float = 120) -> int:
    """Wait until the server holds `count` long-polls (its own count); what it holds then."""
    deadline = time.monotonic() + timeout_s
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(headers=headers, timeout=120) as http:
        while True:
            response = await http.get(f"{url}/api/v1/server/stats")
            held = int(response.json()["held_long_polls"])
            if held >= count or time.monotonic() > deadline:
                return held
            await asyncio.sleep(0.5)


async def run_latency(url: str, server: Uptend, count: int, held: int) -> None:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    measured, others = server.creds[0], server.creds[1:]
    generation = idle_body(url, measured)["generation"]
    figures("1 agent", await latency(url, server.admin_token, measured, "bench-0", count))
    crowd = Held(host, int(port), others[:held], generation)
    await crowd.start()
    say(f"{await until_held(url, server.admin_token, held)} long-polls held (server's count)")
    figures(
        f"1 agent beside {held} held long-polls",
        await latency(url, server.admin_token, measured, "bench-0", count),
    )
    await crowd.stop()


async def run_memory(url: str, pid: int, server: Uptend, held: int) -> None:
    """On a fresh server: RSS with `held` agents known, then with all of them held."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    creds = server.creds[1 : held + 1]
    generation = idle_body(url, server.creds[0])["generation"]
    body = {"agent_version": "0.1.0", "apps": [{"app": APP, "version": "1.0", "state": "running"}]}

    async def known(cred: str) -> None:
        await post(host, int(port), "/api/v1/checkin", cred, {**body, "generation": generation})

    for i in range(0, len(creds), BATCH):
        await asyncio.gather(*(known(c) for c in creds[i : i + BATCH]))
    await asyncio.sleep(2)
    base = rss_kb(pid)
    crowd = Held(host, int(port), creds, generation)
    await crowd.start()
    counted = await until_held(url, server.admin_token, held)
    await asyncio.sleep(1)
    now = rss_kb(pid)
    say(
        f"server RSS: {base / 1024:.1f} MB with {held} agents known, {now / 1024:.1f} MB with"
        f" {counted} long-polls held: {(now - base) / held:.1f} KB per held request"
        f" (target <= {TARGETS['kb_per_held']:.0f})"
    )
    await crowd.stop()


@contextlib.contextmanager
def server_process(server: Uptend) -> Iterator[tuple[str, int]]:
    proc = subprocess.Popen(
        [*UPTEND, "server", "run", str(server.dir), "--port", "0"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().decode().strip().removeprefix("listening on "), proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=50)
    parser.add_argument("--held", default="2000,10000")
    args = parser.parse_args()
    helds = [int(n) for n in args.held.split(",")]
    with tempfile.TemporaryDirectory(prefix="uptend-bench-commands-") as tmp:
        root = Path(tmp)
        server = Uptend(root, "")
        server.seed_agents(max(helds) + 1)
        with server_process(server) as (url, _):
            publish_one(url, server.admin_token, root)
            asyncio.run(run_latency(url, server, args.commands, helds[0]))
        for n in helds:  # a fresh process each: no heap left over from an earlier point
            with server_process(server) as (url, pid):
                asyncio.run(run_memory(url, pid, server, n))


if __name__ == "__main__":
    main()
