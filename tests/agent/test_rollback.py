"""A new version that fails its health check is rolled back, reported, and not retried in a loop.

docs/faults.md E36-E39, through real processes: the server, the agent, the app and its probes.
"""

import contextlib
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.agent.crash_support import (
    POLL_S,
    admin_get,
    app_pids,
    attempt_logs,
    reports,
    wait_checkins,
    wait_settled,
)
from tests.agent.lanes import Lane, lane, shared_fleet
from tests.support.fleet import Host, wait_until

__all__ = ["lane", "shared_fleet"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def agent_app(lane: Lane, host: Host) -> dict[str, Any]:
    """The app's row in `uptend fleet list --json` (through the real CLI)."""
    for agent in lane.fleet.agents():
        if agent["name"] == host.name:
            for app in agent["apps"]:
                if app["app"] == lane.app:
                    return app  # type: ignore[no-any-return]
    raise AssertionError(f"{host.name} {lane.app} is not in `fleet list`")


def failed_reports(lane: Lane, host: Host, version: str) -> list[dict[str, Any]]:
    return [
        r
        for r in reports(lane.fleet, host)
        if (r["app"], r["version"]) == (lane.app, version)
        and r["outcome"] in ("failed", "rolled_back", "rollback_failed")
    ]


def server_says_failed(lane: Lane, host: Host) -> bool:
    agent = admin_get(lane.fleet, f"agents/{host.name}")["agent"]
    return any(a["app"] == lane.app and a["state"] == "failed" for a in agent["apps"])


CASES: dict[str, tuple[dict[str, Any], str, str]] = {
    "crash": (  # a probation longer than a Python start on a loaded machine: else it ends first
        {"mode": "crash", "probation": 3.0},
        "exited with code 3",
        "fatal: this build cannot start",
    ),
    "http-probe": (
        {"mode": "unhealthy", "health_http": True},
        "answered 500",
        "app 2.0 starting in mode unhealthy",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_failed_version_is_rolled_back_reported_and_retried_only_when_told(
    lane: Lane, case: str
) -> None:
    release, reason, output = CASES[case]
    if release.get("health_http"):
        release = {**release, "port": free_port()}
    host = lane.up("1.0")
    lane.publish("2.0", **release)

    wait_until(lambda: len(failed_reports(lane, host, "2.0")) == 1, what="a failure report")
    wait_settled(host, lane.app, "1.0")
    assert host.journal(lane.app)["bad"] == ["2.0"]

    wait_until(lambda: server_says_failed(lane, host), what="the server shows the failure")
    row = agent_app(lane, host)  # what the operator sees
    assert row["state"] == "failed"
    assert row["installed"] == "1.0"
    assert reason in row["reason"]["message"]
    shown = lane.fleet.json("fleet", "show", host.name)
    [report] = [r for r in shown["reports"] if r["outcome"] == "rolled_back"]
    assert report["version"] == "2.0"
    assert reason in report["reason"]
    assert output in report["log_tail"]  # the app's own words, not only ours

    # E39: held back, not retried in a loop
    wait_checkins(lane.fleet, host, 3)
    assert len(attempt_logs(host, lane.app, "2.0")) == 1
    assert host.running_version(lane.app) == "1.0"

    lane.fleet.cli("fleet", "retry", host.name, lane.app)
    wait_until(lambda: len(failed_reports(lane, host, "2.0")) == 2, what="the retry's report")
    wait_settled(host, lane.app, "1.0")
    wait_checkins(lane.fleet, host, 3)
    assert len(attempt_logs(host, lane.app, "2.0")) == 2  # once more, not again and again
    assert len(failed_reports(lane, host, "2.0")) == 2


def _sleepers(host: Host) -> list[int]:
    """Live `sleep 30` probe processes started from this host's data dir."""
    found = []
    root = str(host.dir.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            if cmdline[:2] == [b"sleep", b"30"] and str((entry / "cwd").readlink()).startswith(
                root
            ):
                found.append(int(entry.name))
    return found


def test_hung_command_probe_is_killed_at_its_timeout(lane: Lane) -> None:
    """E37: the probe hangs; it is killed after `timeout` and the version is rolled back."""
    host = lane.up("1.0")
    manifest = (
        f'[app]\ncommand = ["{sys.executable}", "app.py"]\n\n'
        '[health]\nprobation = 0.3\ncommand = ["sleep", "30"]\ntimeout = 1\n'
    )
    started = time.monotonic()
    lane.publish("2.0", manifest=manifest)
    wait_until(lambda: len(failed_reports(lane, host, "2.0")) == 1, what="a failure report")
    assert time.monotonic() - started < 25  # well before the probe would have returned
    [report] = failed_reports(lane, host, "2.0")
    assert report["outcome"] == "rolled_back"
    assert "hung for 1s and was killed" in report["reason"]
    wait_settled(host, lane.app, "1.0")
    assert _sleepers(host) == []


def test_first_install_that_fails_leaves_nothing_running(lane: Lane) -> None:
    """Nothing good to go back to: no `current`, no app process, reported failed, held back."""
    lane.fleet.assign(lane.app, group=lane.group, poll=POLL_S)
    lane.publish("1.0", mode="crash")
    host = lane.fleet.add_host(group=lane.group)
    lane.hosts.append(host)
    host.start()

    wait_until(lambda: len(failed_reports(lane, host, "1.0")) == 1, what="a failure report")
    [report] = failed_reports(lane, host, "1.0")
    assert report["outcome"] == "failed"
    assert "fatal: this build cannot start" in report["log_tail"]
    wait_until(lambda: server_says_failed(lane, host), what="the server shows the failure")
    journal = host.journal(lane.app)
    assert (journal["phase"], journal["current"], journal["bad"]) == ("idle", None, ["1.0"])
    assert host.current(lane.app) is None
    wait_checkins(lane.fleet, host, 2)
    assert app_pids(host, lane.app) == []
    assert len(attempt_logs(host, lane.app, "1.0")) == 1
    assert host.versions(lane.app) == ["1.0"] or host.versions(lane.app) == []


# 1.0 runs until the test drops a `broken` file into its state dir; then it exits 4 at start
BREAKABLE_SCRIPT = (
    'if [ -e "$UPTEND_STATE_DIR/broken" ]; then echo 1.0 broke; exit 4; fi; exec "$0" app.py'
)
BREAKABLE = f"""[app]
command = ["sh", "-c", {json.dumps(BREAKABLE_SCRIPT)}, "{sys.executable}"]

[health]
probation = 0.3
"""


def test_rollback_target_that_fails_too_is_kept_and_restarted(lane: Lane) -> None:
    """E38: reported as "rollback failed"; the last good version is never deleted and is
    restarted with backoff until it recovers."""
    host = lane.up("1.0", manifest=BREAKABLE)
    (host.dir / "apps" / lane.app / "state" / "broken").touch()  # 1.0 now fails to start too
    lane.publish("2.0", mode="crash")

    wait_until(lambda: len(failed_reports(lane, host, "2.0")) == 1, what="a failure report")
    (report,) = failed_reports(lane, host, "2.0")
    assert report["outcome"] == "rollback_failed"
    assert "the rollback to 1.0 failed" in report["reason"]
    assert "1.0 broke" in report["log_tail"]
    wait_until(
        lambda: host.log_text().count(f"{lane.app} 1.0 exited with code 4; restart") >= 2,
        what="the watchdog restarting 1.0 with backoff",
    )
    assert host.current(lane.app) == "1.0"
    assert host.journal(lane.app)["current"] == "1.0"
    assert "1.0" in host.versions(lane.app)

    (host.dir / "apps" / lane.app / "state" / "broken").unlink()  # fixed: the watchdog recovers
    wait_settled(host, lane.app, "1.0")
