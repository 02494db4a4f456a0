"""bench/checkin.py's load: wrk with rotating credentials, and an open-loop generator.

Both run pinned to LOAD_CPU while the server runs on SERVER_CPU (taskset / sched_setaffinity).
"""

import asyncio
import gc
import json
import os
import re
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

SERVER_CPU, LOAD_CPU = "0", "1"
FIXED_RATE = 1667.0

LUA = """
local creds = {%(creds)s}
local bodies = {%(bodies)s}
local i = %(offset)d  -- a new one per run: a state change must differ from the last run's
request = function()
  i = i + 1
  local n = (i %% #creds) + 1
  local body = bodies[1]
  if %(change)s then body = string.gsub(bodies[1], "REASON", tostring(i)) end
  return wrk.format("POST", "/api/v1/checkin",
    {["Authorization"] = "Bearer " .. creds[n], ["Content-Type"] = "application/json"}, body)
end
"""


def wrk(url: str, script: Path | None, duration: float, connections: int) -> tuple[float, float]:
    """Requests/s and p99 (ms) of one wrk run pinned to LOAD_CPU."""
    cmd = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{round(duration)}s"]
    cmd += ["--latency", "--timeout", "10s"]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} error responses:\n{out}")
    return rps, _ms(re.search(r"99%\s+([\d.]+)(us|ms|s)", out))  # type: ignore[arg-type]


def _ms(match: re.Match[str]) -> float:
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def lua_script(where: Path, creds: list[str], body: dict[str, Any], *, change: bool) -> Path:
    """A wrk script rotating `creds` (with `change`, each request reports a new reason)."""
    path = where / f"checkin-{time.monotonic_ns()}.lua"
    path.write_text(
        LUA
        % {
            "creds": ",".join(f'"{c}"' for c in creds),
            "bodies": _lua_string(json.dumps(body)),
            "change": "true" if change else "false",
            "offset": time.monotonic_ns() % 10**12,
        }
    )
    return path


def _lua_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def _fixed_rate(
    host: str, port: int, requests: list[bytes], rate: float, connections: int
) -> tuple[list[float], list[float]]:
    """Open loop: request k is due at k/rate; its latency counts from then, queueing included.

    Also how late each request was sent: a generator behind schedule (its CPU taken by other
    work on the machine) shows there, not hidden, and not blamed on the server either.
    """
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    latencies: list[float] = []
    late: list[float] = []

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        while (item := await queue.get()) is not None:
            due, request = item
            late.append(time.perf_counter() - due)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode())
            latencies.append(time.perf_counter() - due)
        writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    start = time.perf_counter() + 0.2
    for k, request in enumerate(requests):
        due = start + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((due, request))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return latencies, late


def _requests(url: str, creds: list[str], body: dict[str, Any], count: int) -> list[bytes]:
    host = url.removeprefix("http://").rsplit(":", 1)[0]
    payload = json.dumps(body).encode()
    return [
        (
            f"POST /api/v1/checkin HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer "
            f"{creds[k % len(creds)]}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode()
        + payload
        for k in range(count)
    ]


def _open_loop(url: str, requests: list[bytes], rate: float) -> tuple[list[float], list[float]]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    # The generator's own collections (9-15 ms each, several a run, with this process's
    # heap) would stall its reads and be counted as the server's latency: none while it runs.
    gc.collect()
    gc.disable()
    try:
        return asyncio.run(_fixed_rate(host, int(port), requests, rate, 64))
    finally:
        gc.enable()
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


def warm_up(url: str, creds: list[str], body: dict[str, Any]) -> None:
    """One check-in per agent, as fast as the server answers (wrk cannot stop at a count)."""
    _open_loop(url, _requests(url, creds, body, len(creds)), rate=1e9)


class FixedRate:
    """p50 and p99 (ms) of check-ins sent at FIXED_RATE; how late the generator sent (p99)."""

    def __init__(self, latencies: list[float], late: list[float]) -> None:
        cuts = statistics.quantiles(latencies, n=100)
        self.p50, self.p99 = cuts[49] * 1000, cuts[98] * 1000
        self.late_p99 = statistics.quantiles(late, n=100)[98] * 1000


def fixed_rate(url: str, creds: list[str], body: dict[str, Any], duration: float) -> FixedRate:
    """Check-ins sent at FIXED_RATE for `duration` seconds."""
    requests = _requests(url, creds, body, int(FIXED_RATE * duration))
    return FixedRate(*_open_loop(url, requests, FIXED_RATE))
