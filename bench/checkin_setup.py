"""bench/checkin.py's servers: the FastAPI baseline, and uptend with agents seeded by SQL."""

import contextlib
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from bench.checkin_load import SERVER_CPU
from sqlalchemy import create_engine, text

UPTEND = [sys.executable, "-m", "uptend"]
APP = "bench"

BASELINE = """
import sys
import time
import uvicorn
from fastapi import FastAPI
from uptend.cli.server import listening_socket
from uptend.protocol import AppDirective, CheckIn, Directives

app = FastAPI()

@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "world"}

@app.post("/api/v1/checkin")
async def checkin(body: CheckIn) -> Directives:
    return Directives(
        poll_interval_s=60.0,
        apps=[AppDirective(app=s.app, version=s.version, reason="newest") for s in body.apps],
    )

sock = listening_socket("127.0.0.1", 0)
print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on")).run(sockets=[sock])
"""


@contextlib.contextmanager
def serving(cmd: list[str], env: dict[str, str] | None = None) -> Iterator[str]:
    """Start a server pinned to SERVER_CPU; yield its URL from its first stdout line."""
    proc = subprocess.Popen(
        ["taskset", "-c", SERVER_CPU, *cmd],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        if not line.startswith("listening on "):
            raise RuntimeError(f"server did not start: {line!r}")
        yield line.removeprefix("listening on ")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


class Uptend:
    """A server data dir with one app, its agents seeded by SQL, and its database URL."""

    def __init__(self, root: Path, database_url: str) -> None:
        self.dir = root / "server"
        args = [*UPTEND, "server", "init", str(self.dir), "--json"]
        if database_url:
            args += ["--database-url", database_url]
        info = json.loads(subprocess.run(args, check=True, capture_output=True).stdout)
        self.admin_token: str = info["admin_token"]
        self.url_db = database_url or f"sqlite:///{self.dir / 'uptend.db'}"
        self.creds: list[str] = []

    def sql(self, statements: list[tuple[str, Any]]) -> None:
        engine = create_engine(self.url_db)
        try:
            with engine.begin() as conn:
                for sql, params in statements:
                    conn.execute(text(sql), params)
        finally:
            engine.dispose()

    def seed_agents(self, count: int) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        agents, apps = [], []
        for i in range(len(self.creds), len(self.creds) + count):
            cred = "utc_" + secrets.token_urlsafe(32)
            self.creds.append(cred)
            agent_id = uuid.uuid4().hex
            digest = hashlib.sha256(cred.encode()).hexdigest()
            agents.append(
                {"id": agent_id, "name": f"bench-{i}", "h": digest, "now": now, "v": "0.1.0"}
            )
            apps.append({"id": agent_id, "now": now})
        self.sql(
            [
                (
                    'INSERT INTO agents (id, name, "group", credential_hash, enrolled_at,'
                    " last_seen, agent_version) VALUES (:id, :name, 'default', :h, :now, :now, :v)",
                    agents,
                ),
                (
                    "INSERT INTO agent_apps (agent_id, app, installed, state, target, reason,"
                    " log_tail, retry, updated_at) VALUES (:id, 'bench', '1.0', 'running', NULL,"
                    " '', '', false, :now)",
                    apps,
                ),
            ]
        )

    def seed_old_releases(self, count: int) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        rows = [
            {"v": f"0.{i}", "t": f"{APP}/0.{i}/{APP}-0.{i}.tar.gz", "now": now}
            for i in range(count)
        ]
        self.sql(
            [
                (
                    "INSERT INTO releases (app, version, channel, target, length, sha256,"
                    f" created_at) VALUES ('{APP}', :v, 'stable', :t, 1, '', :now)",
                    rows,
                ),
                ("UPDATE generation SET value = value + 1 WHERE id = 1", {}),
            ]
        )


def publish_one(url: str, token: str, root: Path) -> None:
    from tests.support.fleet import make_release

    from uptend import archive

    bundle = root / "bench-1.0.tar.gz"
    archive.pack_dir(make_release(root / "releases", "1.0"), bundle)
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as http:
        http.put("/api/v1/groups/default", json={"app": APP}).raise_for_status()
        params = {"app": APP, "version": "1.0", "channel": "stable"}
        http.post("/api/v1/releases", params=params, content=bundle.read_bytes()).raise_for_status()


def idle_body(url: str, cred: str) -> dict[str, Any]:
    """The recorded state plus the generation of the directives an agent would hold."""
    body: dict[str, Any] = {
        "agent_version": "0.1.0",
        "apps": [{"app": APP, "version": "1.0", "state": "running"}],
    }
    answer = httpx.post(
        f"{url}/api/v1/checkin", json=body, headers={"Authorization": f"Bearer {cred}"}
    )
    answer.raise_for_status()
    return {**body, "generation": answer.json()["generation"]}


def stats(url: str, token: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/api/v1/server/stats", headers={"Authorization": f"Bearer {token}"})
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def drained(url: str, token: str) -> None:
    """Wait until the server's batched last-seen times are written (within a few intervals).

    Nothing pending, and the rows written unchanged over 0.3 s: a flush takes the pending
    times at once, then writes them in chunks.
    """
    seen = stats(url, token)["lastseen"]
    deadline = time.monotonic() + 3 * seen["interval_s"] + 10
    while True:
        time.sleep(0.3)
        now = stats(url, token)["lastseen"]
        if not now["pending"] and now["rows"] == seen["rows"]:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not write its last-seen times in time")
        seen = now
