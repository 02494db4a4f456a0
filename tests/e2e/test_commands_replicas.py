"""Two server processes on one PostgreSQL: a command sent through one reaches an agent
long-polling the other, and a lost notification listener loses no command.

The agent talks to replica B through a small proxy on 127.0.0.1 (the tamper proxy, with no
fault set); the operator's CLI and API calls go to replica A. Real processes throughout.
"""

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.test_agent_loop import alive_pid
from tests.e2e.test_commands import APP, EFFECT_S, host_with_two_apps, is_done, send, within
from tests.support.fleet import UPTEND, Fleet, wait_until
from tests.support.pg import PG_ADMIN_URL, fresh_database
from tests.support.tamper_proxy import TamperProxy


@pytest.fixture
def pg_fleet(tmp_path: Path) -> Iterator[Fleet]:
    with fresh_database() as url, Fleet(tmp_path, database_url=url) as fleet:
        yield fleet


@pytest.fixture
def replica(pg_fleet: Fleet) -> Iterator[str]:
    """A second `uptend server run` on the same data dir and database: its URL."""
    log = (pg_fleet.root / "replica.log").open("ab")
    run = [*UPTEND, "server", "run", str(pg_fleet.server_dir), "--port", "0"]
    proc = subprocess.Popen(run, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
    log.close()
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    assert line.startswith("listening on "), line
    try:
        yield line.removeprefix("listening on ")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        proc.stdout.close()


def stats(url: str, fleet: Fleet) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {fleet.admin_token}"}
    response = httpx.get(f"{url}/api/v1/server/stats", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def test_a_command_reaches_an_agent_on_the_other_replica_even_past_a_lost_listener(
    pg_fleet: Fleet, replica: str
) -> None:
    fleet = pg_fleet
    with TamperProxy(replica) as proxy:
        host = host_with_two_apps(fleet, server=proxy.url)
        wait_until(lambda: stats(replica, fleet)["held_long_polls"] >= 1, what="held on B")
        assert stats(fleet.url, fleet)["held_long_polls"] == 0  # A holds none of its requests

        send(fleet, host, "stop", "--app", APP)  # through A
        within(EFFECT_S, lambda: alive_pid(host, APP) is None, "demo stopped via B")

        # B's listener loses its connection; a command is sent at once, while it is away
        listener = stats(replica, fleet)["listener_pid"]
        assert listener is not None
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            killed = conn.execute("SELECT pg_terminate_backend(%s)", (listener,)).fetchone()
        assert killed == (True,)
        with httpx.Client(
            base_url=fleet.url, headers={"Authorization": f"Bearer {fleet.admin_token}"}
        ) as admin:
            sent_at = time.monotonic()
            response = admin.post(
                "/api/v1/commands", json={"action": "start", "agent": host.name, "app": APP}
            )
        assert response.status_code == 201, response.text
        [started] = response.json()
        wait_until(lambda: alive_pid(host, APP) is not None, what="demo started after the loss")
        took = time.monotonic() - sent_at
        assert took <= EFFECT_S, f"the command took {took:.2f}s past a lost listener"
        wait_until(is_done(fleet, started["id"]), what="start acknowledged")
        assert stats(replica, fleet)["listener_pid"] not in (None, listener)  # reconnected
        assert "lost the notification listener" in (fleet.root / "replica.log").read_text()
