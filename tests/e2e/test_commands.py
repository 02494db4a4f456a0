"""Operator commands on a real agent polling every 60 s: they arrive over the long-poll.

Real processes throughout: the server, the agent, its apps, the CLI that sends, and for
lost answers the tamper proxy between the agent and the server. Each command takes effect
within 2 s of `uptend command send` returning, far inside the 60 s poll.
"""

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.agent.crash_support import attempt_logs
from tests.e2e.test_agent_loop import alive_pid
from tests.e2e.test_hostile import edit_agent_json
from tests.support.fleet import UPTEND, Fleet, Host, wait_until
from tests.support.tamper_proxy import TamperProxy

APP, SIDE = "demo", "side"
POLL = 60.0
EFFECT_S = 2.0


@pytest.fixture
def proxy(fleet: Fleet) -> Iterator[TamperProxy]:
    with TamperProxy(fleet.url) as p:
        yield p


def host_with_two_apps(fleet: Fleet, server: str = "", probation: float = 0.3) -> Host:
    for app in (APP, SIDE):
        fleet.assign(app, poll=POLL)
        fleet.publish(app, "1.0", probation=probation)
    host = fleet.add_host()
    if server:
        edit_agent_json(host, server=server)
    host.start()
    for app in (APP, SIDE):
        wait_until(lambda a=app: alive_pid(host, a) is not None, what=f"{app} running")  # type: ignore[misc]
        wait_until(lambda a=app: host.journal(a)["phase"] == "idle", what=f"{app} installed")  # type: ignore[misc]
    return host


def send(fleet: Fleet, host: Host, action: str, *args: str) -> dict[str, Any]:
    [sent] = json.loads(fleet.cli("command", "send", host.name, action, *args, "--json").stdout)
    return sent  # type: ignore[no-any-return]


def state_of(fleet: Fleet, command_id: int) -> str:
    for c in fleet.json("command", "list"):
        if c["id"] == command_id:
            return str(c["state"])
    raise AssertionError(f"command {command_id} is not listed")


def is_done(fleet: Fleet, command_id: int) -> Callable[[], bool]:
    return lambda: state_of(fleet, command_id) == "done"


def moved(host: Host, app: str, pid: int | None) -> Callable[[], bool]:
    """Whether `app` runs with another pid than `pid` (restarted)."""
    return lambda: alive_pid(host, app) not in (None, pid)


def within(seconds: float, predicate: Callable[[], bool], what: str) -> float:
    """Seconds until `predicate` held, failing if that took longer than `seconds`."""
    start = time.monotonic()
    wait_until(predicate, timeout_s=30, what=what)
    took = time.monotonic() - start
    assert took <= seconds, f"{what} after {took:.2f}s (want <= {seconds}s)"
    return took


def starts(host: Host, app: str) -> int:
    return host.log_text().count(f"started {app} 1.0 (pid")


def row(fleet: Fleet, host: Host, app: str) -> dict[str, Any]:
    return fleet.agent_app(host, app)


def test_stop_start_and_restart_each_take_effect_within_2s_on_a_60s_poll(fleet: Fleet) -> None:
    host = host_with_two_apps(fleet)
    before = alive_pid(host, APP)
    assert before is not None

    stop = send(fleet, host, "stop", "--app", APP)
    within(EFFECT_S, lambda: alive_pid(host, APP) is None, "demo stopped")
    wait_until(lambda: state_of(fleet, stop["id"]) == "done", what="stop acknowledged")
    wait_until(lambda: row(fleet, host, APP).get("stopped_by_operator") is True, what="shown")
    wide = {**fleet.env(), "COLUMNS": "250"}  # one line per row
    listing = subprocess.run(
        [*UPTEND, "fleet", "list"], env=wide, capture_output=True, text=True, check=True
    ).stdout
    assert "stopped by operator" in listing, listing
    assert alive_pid(host, SIDE) is not None  # only the app named

    send(fleet, host, "start", "--app", APP)
    within(EFFECT_S, lambda: alive_pid(host, APP) not in (None, before), "demo started")
    started = alive_pid(host, APP)

    restart = send(fleet, host, "restart", "--app", APP)
    within(EFFECT_S, lambda: alive_pid(host, APP) not in (None, started), "demo restarted")
    wait_until(is_done(fleet, restart["id"]), what="restart acknowledged")
    [acked] = [c for c in fleet.json("command", "list") if c["id"] == restart["id"]]
    assert acked["result"] == f"restart: {APP} up"  # acknowledged once back up and healthy

    [shown] = [
        c for c in fleet.json("fleet", "show", host.name)["commands"] if c["id"] == stop["id"]
    ]
    assert (shown["action"], shown["app"], shown["sent_by"]) == ("stop", APP, "admin#1")
    done = fleet.json("command", "list", "--agent", host.name, "--state", "done")
    assert [c["action"] for c in done] == ["restart", "start", "stop"]


def test_a_stopped_app_stays_stopped_across_an_agent_restart_and_a_sigkill(fleet: Fleet) -> None:
    host = host_with_two_apps(fleet)
    stop = send(fleet, host, "stop", "--app", APP)
    wait_until(lambda: state_of(fleet, stop["id"]) == "done", what="stop acknowledged")

    assert host.stop() == 0  # SIGTERM: the agent stops its apps and exits
    host.start()
    wait_until(lambda: alive_pid(host, SIDE) is not None, what="side started again")
    for kill in (False, True):
        if kill:
            host.kill()  # SIGKILL: the apps outlive it; the next agent adopts them
            host.start()
        side = alive_pid(host, SIDE)
        # A command the new agent carried out shows it runs its loop (and its supervisor)
        send(fleet, host, "restart", "--app", SIDE)
        wait_until(moved(host, SIDE, side), what="side restarted")
        assert alive_pid(host, APP) is None, "the stopped app was started again"
        wait_until(lambda: row(fleet, host, APP).get("stopped_by_operator") is True, what="shown")

    send(fleet, host, "start", "--app", APP)
    within(EFFECT_S, lambda: alive_pid(host, APP) is not None, "demo started")


def test_an_expired_command_is_not_run(fleet: Fleet) -> None:
    host = host_with_two_apps(fleet)
    running = alive_pid(host, APP)
    host.kill()  # the apps keep running; the command waits for an agent that is not there
    late = send(fleet, host, "stop", "--app", APP, "--expires", "1s")
    wait_until(lambda: state_of(fleet, late["id"]) == "expired", what="expired")
    host.start()
    side = alive_pid(host, SIDE)
    send(fleet, host, "restart", "--app", SIDE)  # proof the agent is checking in again
    wait_until(lambda: alive_pid(host, SIDE) not in (None, side), what="side restarted")
    assert alive_pid(host, APP) == running
    assert state_of(fleet, late["id"]) == "expired"
    book = json.loads((host.dir / "state" / "commands.json").read_text())["book"]
    assert late["id"] not in [i for i, _, _ in book["done"]]  # never reached the agent


def test_a_command_whose_answer_or_ack_is_lost_is_carried_out_exactly_once(
    fleet: Fleet, proxy: TamperProxy
) -> None:
    host = host_with_two_apps(fleet, server=proxy.url)
    for lost in (b"", b'"acks":[{'):  # the answer delivering it; the answer taking its ack
        before = starts(host, APP)
        pid = alive_pid(host, APP)
        proxy.drop_answer("/api/v1/checkin", lost)
        sent = send(fleet, host, "restart", "--app", APP)
        wait_until(is_done(fleet, sent["id"]), what="acknowledged")
        wait_until(moved(host, APP, pid), what="restarted")
        dropped = [s for s in proxy.requests_for("/api/v1/checkin") if s.fault == "drop"]
        assert len(dropped) == (1 if not lost else 2), dropped  # the fault did happen
        # Give a second execution every chance to show: the agent checks in once more
        check = send(fleet, host, "check-now")
        wait_until(is_done(fleet, check["id"]), what="check-now done")
        assert starts(host, APP) == before + 1, host.log_text()[-3000:]


def test_a_retry_survives_a_dropped_answer_and_runs_once(fleet: Fleet, proxy: TamperProxy) -> None:
    host = host_with_two_apps(fleet, server=proxy.url)
    fleet.publish(APP, "2.0", mode="crash", probation=0.3)
    wait_until(lambda: len(attempt_logs(host, APP, "2.0")) == 1, what="2.0 tried")
    wait_until(lambda: "2.0" in host.journal(APP)["bad"], what="2.0 failed here")
    wait_until(lambda: host.journal(APP)["phase"] == "idle", what="back on 1.0")
    wait_until(lambda: row(fleet, host, APP).get("state") == "failed", what="failure shown")

    proxy.drop_answer("/api/v1/checkin", b"")  # the answer that hands the retry out is lost
    sent = json.loads(fleet.cli("fleet", "retry", host.name, APP, "--json").stdout)
    assert (sent["action"], sent["app"], sent["state"]) == ("retry", APP, "pending")
    wait_until(is_done(fleet, sent["id"]), what="retry acknowledged")
    dropped = [s for s in proxy.requests_for("/api/v1/checkin") if s.fault == "drop"]
    assert len(dropped) == 1, dropped  # the fault did happen
    wait_until(lambda: len(attempt_logs(host, APP, "2.0")) == 2, what="2.0 tried again")
    wait_until(lambda: host.journal(APP)["phase"] == "idle", what="back on 1.0 again")

    check = send(fleet, host, "check-now")  # a second run would show by now
    wait_until(is_done(fleet, check["id"]), what="check-now done")
    assert len(attempt_logs(host, APP, "2.0")) == 2
    assert host.log_text().count(f"command {sent['id']}: retry: {APP}") == 1


def test_a_damaged_command_record_never_runs_a_command_twice(fleet: Fleet) -> None:
    host = host_with_two_apps(fleet, probation=4.0)  # a restart is acked 4 s after it
    before, pid = starts(host, APP), alive_pid(host, APP)
    sent = send(fleet, host, "restart", "--app", APP)
    wait_until(moved(host, APP, pid), what="restarted")
    host.kill()  # it ran; its ack was still to come, so the server holds it pending
    assert state_of(fleet, sent["id"]) == "pending"
    for name in ("commands.json", "commands.json.bak"):  # both copies: no record to trust
        damaged = host.dir / "state" / name
        assert APP.encode() in damaged.read_bytes()
        damaged.write_bytes(damaged.read_bytes().replace(APP.encode(), b"dem0"))

    host.start()
    wait_until(lambda: state_of(fleet, sent["id"]) == "failed", what="refused, not run again")
    [shown] = [c for c in fleet.json("command", "list") if c["id"] == sent["id"]]
    assert "command record was damaged" in shown["result"]
    check = send(fleet, host, "check-now")  # and the record is trusted again after that
    wait_until(is_done(fleet, check["id"]), what="check-now done")
    assert starts(host, APP) == before + 1, host.log_text()[-3000:]
