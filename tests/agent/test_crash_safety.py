"""Kill -9 at every step of an update: the host always runs a whole version (docs/faults.md D).

Every case runs real `uptend agent run` processes against a real server. The agent kills
itself with SIGKILL at a named crash point (no finally, no atexit, no flush), or the test
kills it at a random instant; then a new agent starts on the same data dir and must finish
or undo what the dead one left, with exactly one app process running at the end.
"""

import hashlib
import json
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.agent.crash_support import (
    agent_died_of_sigkill,
    app_pids,
    assert_whole,
    describe,
    live_pid,
    reports,
    wait_settled,
)
from tests.agent.lanes import Lane, lane, shared_fleet
from tests.support.debs import PACKAGE, deb_host, private_root, publish_deb, query
from tests.support.fleet import Fleet, Host, wait_until
from tests.support.rpms import private_rpm_root, publish_rpm, rpm_host, rpm_query
from uptend.agent import journal as journal_module
from uptend.agent.crashpoints import ALL_CRASHPOINTS, ARM_ENV, DEB_CRASHPOINTS, LOG_ENV
from uptend.agent.machine import MAX_ATTEMPTS

__all__ = ["lane", "shared_fleet"]

ROLLBACK_ONLY = {"saved:rolling_back"}  # reached only when the new version fails
BEFORE_RENAME = {"saved:fetching", "download:mid", "saved:staging", "unpack:mid"}
BEFORE_STOP = BEFORE_RENAME | {"unpack:renamed", "saved:activating"}


@pytest.mark.parametrize("point", ALL_CRASHPOINTS)
def test_kill_9_anywhere_leaves_a_whole_version(lane: Lane, point: str) -> None:
    rollback = point in ROLLBACK_ONLY
    host = lane.up("1.0")
    assert host.stop() == 0
    # a version that exits at once goes through the rollback; any other one is installed
    lane.publish("2.0", mode="crash" if rollback else "ok")

    host.start(env={ARM_ENV: point})
    agent_died_of_sigkill(host)
    assert_whole(host, lane.app, {"1.0", "2.0"})
    if point in BEFORE_RENAME:  # D26: nothing half-made ever appears in versions/
        assert host.versions(lane.app) == ["1.0"]
    else:  # D27: the verified version is kept, the install goes on from it
        assert "2.0" in host.versions(lane.app)
    if point in BEFORE_STOP:  # the old app outlives its agent: kill -9 is no outage
        assert host.running_version(lane.app) == "1.0"
        assert len(app_pids(host, lane.app)) == 1

    host.start()  # no crash point: resume or clean up
    final = "1.0" if rollback else "2.0"
    wait_settled(host, lane.app, final)
    assert_whole(host, lane.app, {final})
    journal = host.journal(lane.app)
    assert journal["current"] == final
    if rollback:
        assert journal["bad"] == ["2.0"]
    # the outcome reaches the server exactly once, even when the kill came right after it
    outcome = "rolled_back" if rollback else "installed"
    wait_until(lambda: _outcomes(lane, host) == [outcome], what=f"{outcome} report")


def _outcomes(lane: Lane, host: Host, version: str = "2.0") -> list[str]:
    """The outcomes the server received from `host` for `version`, oldest first."""
    found = reports(lane.fleet, host)
    return [
        r["outcome"] for r in reversed(found) if (r["app"], r["version"]) == (lane.app, version)
    ]


def test_one_update_and_one_rollback_reach_every_crash_point(lane: Lane, tmp_path: Path) -> None:
    """No point goes untested: a clean update plus a rollback pass through all of them."""
    reached = tmp_path / "crashpoints.log"
    host = lane.up("1.0")
    assert host.stop() == 0
    host.start(env={LOG_ENV: str(reached)})
    lane.publish("2.0")
    wait_settled(host, lane.app, "2.0")
    lane.publish("3.0", mode="crash")
    wait_until(lambda: "3.0" in host.journal(lane.app)["bad"], what="3.0 rolled back")
    wait_settled(host, lane.app, "2.0")
    assert set(reached.read_text().split()) == set(ALL_CRASHPOINTS)


def test_interrupted_probation_rolls_back_after_the_limit(lane: Lane) -> None:
    """D30: each kill during probation re-runs it; the loop breaker rolls back at the limit."""
    host = lane.up("1.0")
    assert host.stop() == 0
    lane.publish("2.0")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        host.start(env={ARM_ENV: "probation:mid"})
        agent_died_of_sigkill(host)
        journal = host.journal(lane.app)
        assert (journal["phase"], journal["attempts"]) == ("probation", attempt)
        assert host.current(lane.app) == "2.0"
    host.start()
    wait_settled(host, lane.app, "1.0")
    assert host.journal(lane.app)["bad"] == ["2.0"]

    def rolled_back() -> list[dict[str, Any]]:
        return [r for r in reports(lane.fleet, host) if r["outcome"] == "rolled_back"]

    wait_until(lambda: bool(rolled_back()), what="rolled_back report")
    [report] = rolled_back()
    assert report["version"] == "2.0"
    assert f"interrupted {MAX_ATTEMPTS} times during probation" in report["reason"]


def test_dying_at_the_same_step_holds_the_release_back(lane: Lane) -> None:
    """D35: an agent that dies unpacking 2.0 every time stops trying it, and says so."""
    host = lane.up("1.0")
    assert host.stop() == 0
    lane.publish("2.0")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        host.start(env={ARM_ENV: "unpack:mid"})
        agent_died_of_sigkill(host)
        journal = host.journal(lane.app)
        assert (journal["phase"], journal["attempts"]) == ("staging", attempt)
    host.start()

    def failed() -> list[dict[str, Any]]:
        return [r for r in reports(lane.fleet, host) if r["outcome"] == "failed"]

    wait_until(lambda: bool(failed()), what="failed report")
    [report] = failed()
    assert report["version"] == "2.0"
    assert f"died {MAX_ATTEMPTS} times while staging 2.0" in report["reason"]
    wait_settled(host, lane.app, "1.0")
    assert host.journal(lane.app)["bad"] == ["2.0"]
    assert "2.0" not in host.versions(lane.app)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: b"", id="zero-length"),
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: os.urandom(len(data)), id="garbage"),
        pytest.param(lambda data: data.replace(b'"idle"', b'"unpacking"'), id="bad-checksum"),
    ],
)
def test_damaged_journal_still_starts_and_runs_the_app(
    lane: Lane, damage: Callable[[bytes], bytes]
) -> None:
    """D34: recovery trusts what the disk shows (`current`) and the agent keeps working."""
    host = lane.up("1.0")
    assert host.stop() == 0
    journal = host.dir / "state" / f"{lane.app}.journal"
    journal.write_bytes(damage(journal.read_bytes()))

    host.start()
    wait_until(lambda: host.running_version(lane.app) == "1.0", what="1.0 running again")
    assert app_pids(host, lane.app) == [live_pid(host, lane.app)]
    assert host.proc is not None
    assert host.proc.poll() is None, host.log_text()[-3000:]
    lane.publish("2.0")  # and the next update goes through, writing a whole journal again
    wait_settled(host, lane.app, "2.0")


RANDOM_ROUNDS = 6
KILL_WINDOW_S = (0.2, 2.5)  # from `agent run` to a finished update on a loaded CI machine


def test_kill_9_at_random_instants_never_breaks_the_host(lane: Lane) -> None:
    """The matrix names the points; this one kills wherever the clock happens to land."""
    seed = int(os.environ.get("UPTEND_TEST_SEED", "0")) or time.time_ns()
    rng = random.Random(seed)  # noqa: S311 - a reproducible schedule, not a secret
    host = lane.up("1.0")
    previous = "1.0"
    for round_ in range(1, RANDOM_ROUNDS + 1):
        version = f"{round_ + 1}.0"
        assert host.stop() == 0
        lane.publish(version)
        proc = host.start()
        delay = rng.uniform(*KILL_WINDOW_S)
        time.sleep(delay)  # the random instant is the point of this test
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        where = f"seed {seed}, round {round_}, killed {delay:.2f}s after start"
        try:
            assert_whole(host, lane.app, {previous, version})
        except AssertionError as e:
            raise AssertionError(f"{where}: {e}\n{describe(host, lane.app)}") from None
        host.start()
        try:
            wait_settled(host, lane.app, version)
        except AssertionError as e:
            raise AssertionError(f"{where}: {e}") from None
        assert_whole(host, lane.app, {version})
        previous = version


OLD_PHASES = {  # the crash point that leaves each phase journaled, and its schema-1 name
    "saved:fetching": "downloading",
    "saved:staging": "unpacking",
    "saved:activating": "switching",
    "saved:probation": "probation",
    "saved:rolling_back": "rolling_back",
    "saved:idle": "idle",
}


def as_schema_1(journal: Path) -> None:
    """Rewrite a journal the way an agent of schema 1 wrote it: bundle phase names only."""
    plan = json.loads(journal.read_bytes())["plan"]
    old = {v: k for k, v in journal_module._SCHEMA_1_PHASES.items()}
    body = {k: plan[k] for k in ("current", "target", "attempts", "failure", "bad")}
    body["phase"] = old[plan["phase"]]
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    journal.write_bytes(json.dumps({"schema": 1, "plan": body, "sha256": digest}).encode())


@pytest.mark.parametrize("point", list(OLD_PHASES))
def test_a_schema_1_journal_found_at_start_is_resumed(lane: Lane, point: str) -> None:
    rollback = point == "saved:rolling_back"
    host = lane.up("1.0")
    assert host.stop() == 0
    lane.publish("2.0", mode="crash" if rollback else "ok")
    host.start(env={ARM_ENV: point})
    agent_died_of_sigkill(host)
    journal = host.dir / "state" / f"{lane.app}.journal"
    as_schema_1(journal)
    assert host.journal(lane.app)["phase"] == OLD_PHASES[point]

    host.start()
    final = "1.0" if rollback else "2.0"
    wait_settled(host, lane.app, final)
    assert_whole(host, lane.app, {final})
    if point != "saved:idle":  # idle: nothing changes, so nothing is written
        assert json.loads(journal.read_bytes())["schema"] == 2
        outcome = "rolled_back" if rollback else "installed"
        wait_until(lambda: _outcomes(lane, host) == [outcome], what=f"{outcome} report")


@dataclass(frozen=True)
class PackageKind:
    """How a package kind's crash test makes its root, host and releases, and reads it back."""

    root: Callable[[Path], Path]
    host: Callable[[Fleet, Path], Host]
    publish: Callable[..., Path]
    installed: Callable[[Path], str]  # what the package manager has of PACKAGE
    v2: str  # `installed` once 2.0-1 is installed


PACKAGE_KINDS = {
    "deb": PackageKind(
        private_root, deb_host, publish_deb, lambda root: query(root, PACKAGE), "2.0-1 ii"
    ),
    # the repeated `rpm -U` of what rpm already has must succeed (--replacepkgs)
    "rpm": PackageKind(
        private_rpm_root, rpm_host, publish_rpm, lambda root: rpm_query(root, PACKAGE), "2.0-1"
    ),
}


@pytest.mark.parametrize("kind", list(PACKAGE_KINDS))
def test_a_package_killed_between_its_manager_and_the_commit_ends_installed_and_running(
    fleet: Fleet, tmp_path: Path, kind: str
) -> None:
    """D28/D29 for the package kinds: dpkg/rpm installed 2.0, `current` and the journal say 1.0.

    The point is reached in the worker child, which runs the package manager: it kills the
    agent first, as a power cut would.
    """
    k = PACKAGE_KINDS[kind]
    root = k.root(tmp_path / f"{kind}-root")
    fleet.assign("demo")
    host = k.host(fleet, root)
    k.publish(fleet, root, "1.0", "1.0-1")
    host.start()
    wait_settled(host, "demo", "1.0")
    assert host.stop() == 0
    k.publish(fleet, root, "2.0", "2.0-1")

    host.start(env={ARM_ENV: DEB_CRASHPOINTS[0]})
    agent_died_of_sigkill(host)
    assert k.installed(root) == k.v2  # the package manager finished...
    assert host.current("demo") == "1.0"  # ...nothing else did
    assert host.journal("demo")["phase"] == "activating"

    host.start()
    wait_settled(host, "demo", "2.0")
    assert k.installed(root) == k.v2
    wait_until(lambda: host.running_version("demo") == "2.0", what="v2 running")
    assert len(app_pids(host, "demo")) == 1
    wait_until(
        lambda: (
            [r["outcome"] for r in reports(fleet, host) if r["version"] == "2.0"] == ["installed"]
        ),
        what="one installed report",
    )
    assert host.stop() == 0
