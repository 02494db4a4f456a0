"""The agent's loop never blocks: it checks in and supervises during a whole update.

Real processes throughout: the server, the agent, the apps, and for the download the
fault-injection proxy between the agent and the TUF files.
"""

import os
import signal
import tarfile
import time
from pathlib import Path
from typing import Any

from tests.e2e.test_hostile import (
    APP,
    PROBATION,
    add_release_row,
    artifact,
    assert_refused,
    host_on_1_0,
    proxy,
    release_tar,
    via,
)
from tests.support.fleet import Fleet, Host, make_release, wait_until
from tests.support.tamper_proxy import TamperProxy
from uptend.server.tuf_repo import TufRepo

__all__ = ["proxy"]


def alive_pid(host: Host, app: str) -> int | None:
    seen = host.app_says(app)
    if seen is None:
        return None
    try:
        os.kill(int(seen["pid"]), 0)
    except ProcessLookupError:
        return None
    return int(seen["pid"])


def journal_of(host: Host, app: str) -> dict[str, Any]:
    """The app's journal plan, or {} before the agent first writes it."""
    try:
        return host.journal(app)
    except (OSError, ValueError):
        return {}


def fleet_row(fleet: Fleet, host: Host, app: str) -> dict[str, Any]:
    """The app's row in `uptend fleet list --json`, through the real CLI."""
    return fleet.agent_app(host, app)


def test_during_a_long_probation_the_agent_reports_updating_and_restarts_other_apps(
    fleet: Fleet,
) -> None:
    fleet.assign(APP, poll=1.0)
    fleet.assign("side", poll=1.0)
    fleet.publish(APP, "1.0", probation=PROBATION)
    fleet.publish("side", "1.0", probation=PROBATION)
    host = fleet.add_host()
    host.start()
    for app in (APP, "side"):
        wait_until(lambda a=app: journal_of(host, a).get("current") == "1.0", what=f"{app} 1.0")  # type: ignore[misc]
        wait_until(lambda a=app: alive_pid(host, a) is not None, what=f"{app} running")  # type: ignore[misc]

    fleet.publish(APP, "2.0", probation=20)
    wait_until(lambda: host.journal(APP)["phase"] == "probation", what="2.0 in probation")

    def updating() -> bool:
        row = fleet_row(fleet, host, APP)
        reason = row.get("reason") or {}
        return row.get("state") == "updating" and "probation 2.0" in reason.get("message", "")

    wait_until(updating, what="fleet list showing demo updating in probation")
    row = fleet_row(fleet, host, APP)
    assert row["reason"]["code"] == "updating", row
    assert "of probation left" in row["reason"]["message"], row

    before = alive_pid(host, "side")
    assert before is not None
    os.kill(before, signal.SIGKILL)
    killed = time.monotonic()
    deadline = killed + 10.0
    while (now := alive_pid(host, "side")) in (None, before):
        assert time.monotonic() < deadline, "side was not restarted"
        time.sleep(0.02)
    took = time.monotonic() - killed
    assert now != before
    assert took <= 2.0, f"side restarted after {took:.2f}s"
    assert host.journal(APP)["phase"] == "probation"  # still judging 2.0 meanwhile

    wait_until(lambda: host.running_version(APP) == "2.0", what="2.0 running")
    wait_until(lambda: host.journal(APP)["phase"] == "idle", timeout_s=60, what="2.0 installed")
    assert host.journal(APP)["current"] == "2.0"


def test_replacing_an_app_that_ignores_sigterm_blocks_neither_check_ins_nor_other_apps(
    fleet: Fleet,
) -> None:
    """The old process gets STOP_TIMEOUT_S (10 s) before SIGKILL; the loop goes on meanwhile."""
    fleet.assign(APP, poll=1.0)
    fleet.assign("side", poll=1.0)
    stubborn = make_release(fleet.root / "releases", "1.0", probation=PROBATION)
    code = (stubborn / "app.py").read_text()
    honour = "signal.signal(signal.SIGTERM, lambda *_: stop.set())"
    ignore = 'signal.signal(signal.SIGTERM, lambda *_: print("ignoring SIGTERM", flush=True))'
    assert honour in code
    (stubborn / "app.py").write_text(code.replace(honour, ignore))
    fleet.cli("release", "publish", APP, "1.0", str(stubborn))
    fleet.publish("side", "1.0", probation=PROBATION)
    host = fleet.add_host()
    host.start()
    for app in (APP, "side"):
        wait_until(lambda a=app: journal_of(host, a).get("current") == "1.0", what=f"{app} 1.0")  # type: ignore[misc]
        wait_until(lambda a=app: alive_pid(host, a) is not None, what=f"{app} running")  # type: ignore[misc]
    old = alive_pid(host, APP)
    assert old is not None

    fleet.publish(APP, "2.0", probation=PROBATION)
    app_log = host.dir / "apps" / APP / "logs" / "1.0.out"
    wait_until(lambda: "ignoring SIGTERM" in app_log.read_text(), what="the stop of 1.0 sent")

    def stop_pending() -> bool:
        return host.journal(APP)["phase"] == "activating" and alive_pid(host, APP) == old

    # while the stop waits: another app is supervised...
    side = alive_pid(host, "side")
    assert side is not None
    os.kill(side, signal.SIGKILL)
    wait_until(lambda: alive_pid(host, "side") not in (None, side), what="side restarted")
    assert stop_pending()
    # ...and the agent checks in and acts on what it hears
    fleet.cli("group", "set", "default", "--poll-interval", "2")
    directives = host.dir / "state" / "directives.json"
    wait_until(lambda: '"poll_interval_s":2.0' in directives.read_text(), what="a check-in")
    assert stop_pending()

    wait_until(lambda: host.running_version(APP) == "2.0", timeout_s=60, what="2.0 running")
    wait_until(lambda: host.journal(APP)["phase"] == "idle", timeout_s=60, what="2.0 installed")
    assert host.journal(APP)["current"] == "2.0"
    assert alive_pid(host, APP) != old


BIG = 4 << 20  # bytes of random data in the release: it does not compress
RATE = 512 << 10  # bytes per second through the proxy: about 8 s for the whole download


def test_sigterm_mid_download_stops_within_a_second_and_the_next_start_resumes_with_range(
    fleet: Fleet, proxy: TamperProxy
) -> None:
    host = host_on_1_0(fleet, **via(proxy))
    release = make_release(fleet.root / "releases", "2.0", probation=PROBATION)
    (release / "blob.bin").write_bytes(os.urandom(BIG))
    target_dir = f"/tuf/targets/{APP}/2.0/"
    proxy.slow(target_dir, RATE)
    fleet.cli("release", "publish", APP, "2.0", str(release))

    def part() -> int:
        parts = list((host.dir / "apps" / APP / "staging").glob("*.part"))
        return parts[0].stat().st_size if parts else 0

    wait_until(lambda: part() > 0, what="the download under way")
    assert host.proc is not None
    proc = host.proc
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    proc.wait(timeout=30)
    took = time.monotonic() - sent
    assert proc.returncode == 0, host.log_text()[-3000:]
    assert took <= 1.0, f"the agent took {took:.2f}s to stop mid-download"
    assert host.journal(APP)["phase"] == "fetching"
    kept = part()
    assert 0 < kept < BIG

    proxy.clear()  # full speed from here
    host.start()
    wait_until(lambda: host.running_version(APP) == "2.0", timeout_s=60, what="2.0 running")
    served = proxy.served_for(target_dir)
    (first_range, first_bytes), *rest = served
    assert first_range is None
    assert rest, served
    resumed_range, resumed_bytes = rest[0]
    assert resumed_range is not None
    start = int(resumed_range.removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= first_bytes  # what reached the disk before the stop, not from zero
    length = artifact(fleet, "2.0").stat().st_size
    assert start + resumed_bytes == length  # only the missing bytes were served again


def test_a_target_of_an_unknown_kind_is_refused_and_the_running_version_kept(
    fleet: Fleet,
) -> None:
    host = host_on_1_0(fleet)
    # A signed target no `uptend release publish` makes (it only makes bundles): sign it with
    # the server's own keys, as a newer publisher of another install kind would.
    bundle = release_tar(fleet, "2.0")
    with tarfile.open(bundle) as tar:
        entries = tar.getmembers()
    custom = {
        "app": APP,
        "version": "2.0",
        "channel": "stable",
        "kind": "msi",
        "format": "tar.gz",
        "unpacked_size": sum(m.size for m in entries),
        "files": len(entries),
    }
    name = f"{APP}/2.0/{APP}-2.0.msi"
    target = TufRepo.open(fleet.server_dir / "tuf").add_target(name, bundle, custom)
    add_release_row(fleet, "2.0", name, target.length, target.hashes["sha256"])

    says = "kind 'msi' is not supported by this agent"
    assert_refused(fleet, host, "2.0", "refused", says)
    row = fleet_row(fleet, host, APP)
    assert (row["state"], row["installed"]) == ("failed", "1.0")
    assert not list(Path(host.dir / "apps" / APP / "staging").iterdir())


def test_an_update_that_ends_is_reported_at_once_not_at_the_next_poll(fleet: Fleet) -> None:
    """With a 60 s poll, the report of the update and the next directive come right away."""
    fleet.assign(APP, poll=60.0)
    fleet.publish(APP, "1.0", probation=PROBATION)
    host = fleet.add_host()
    host.start()  # the first check-in is at start: it directs 1.0; the next poll is in 60 s

    def reported() -> bool:
        row = fleet_row(fleet, host, APP)
        return (row.get("installed"), row.get("state")) == ("1.0", "running")

    wait_until(reported, timeout_s=30, what="the server told 1.0 is installed, before the poll")
    detail = fleet.json("fleet", "show", host.name)
    assert [(r["version"], r["outcome"]) for r in detail["reports"]] == [("1.0", "installed")]
