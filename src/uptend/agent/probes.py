"""Health probes of a new version: an HTTP GET (2xx = healthy) and a command (exit 0).

A probe returns None when healthy, else the reason; a hung probe is killed at its timeout.
"""

import os
import subprocess
from pathlib import Path

import urllib3

from uptend.protocol.manifest import HealthSection


def http_probe(url: str, timeout_s: float) -> str | None:
    try:
        response = urllib3.request(
            "GET", url, timeout=urllib3.Timeout(total=timeout_s), retries=False
        )
    except urllib3.exceptions.HTTPError as e:
        return f"http probe {url} failed: {e}"
    if 200 <= response.status < 300:
        return None
    return f"http probe {url} answered {response.status}"


def command_probe(
    command: list[str], cwd: Path, env: dict[str, str], timeout_s: float
) -> str | None:
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env={**os.environ, **env},
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"health command {command!r} hung for {timeout_s:g}s and was killed"
    except OSError as e:
        return f"health command {command!r} could not run: {e}"
    if done.returncode != 0:
        out = (done.stdout + done.stderr).decode("utf-8", "replace").strip()[-500:]
        return f"health command {command!r} exited {done.returncode}: {out}"
    return None


def run_probes(health: HealthSection, cwd: Path, env: dict[str, str]) -> str | None:
    """Run the configured probes once; the first failure's reason, or None if all pass."""
    if health.http is not None and (why := http_probe(health.http, health.timeout)):
        return why
    if health.command is not None:
        return command_probe(health.command, cwd, env, health.timeout)
    return None
