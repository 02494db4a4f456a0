"""Signed remote configuration on a real agent polling every 60 s.

Real processes throughout: the server, the agent and its worker child (which fetches the
config through python-tuf), the app, which reads `UPTEND_CONFIG_FILE`. A config change
takes effect within 2 s of `uptend config set` returning; a config that makes the app fail
its health check is rolled back, reported with the app's output, and not sent again; a
config document altered on the server's disk (not re-signed) is refused.
"""

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from tests.support.fleet import Fleet, Host, wait_until

APP = "demo"
POLL = 60.0
EFFECT_S = 2.0

# Reads its config at start; {"crash": true} makes it print why and exit at once.
CONFIG_APP = """
import json, os, signal, sys, threading
from pathlib import Path

def read():
    return json.loads(Path(os.environ["UPTEND_CONFIG_FILE"]).read_text() or "{}")

config = read()
if config.get("crash"):
    print(f"fatal: bad config {config!r}", flush=True)
    sys.exit(5)
state = Path(os.environ["UPTEND_STATE_DIR"])
stop = threading.Event()
reload = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
signal.signal(signal.SIGHUP, lambda *_: reload.set())
while not stop.is_set():
    if reload.is_set():
        reload.clear()
        config = read()
    tmp = state / ".running.json.tmp"
    tmp.write_text(json.dumps({"pid": os.getpid(), "config": config}))
    tmp.replace(state / "running.json")
    stop.wait(0.1)
"""


def publish_config_app(fleet: Fleet, version: str = "1.0", reload: str = "") -> None:
    src = fleet.root / "releases" / f"config-app-{version}"
    src.mkdir(parents=True)
    (src / "app.py").write_text(CONFIG_APP)
    signal = f'reload_signal = "{reload}"\n' if reload else ""
    (src / "uptend.toml").write_text(
        f'[app]\ncommand = ["{sys.executable}", "app.py"]\n{signal}\n[health]\nprobation = 0.5\n'
    )
    fleet.cli("release", "publish", APP, version, str(src))


def running_config(host: Host) -> dict[str, Any] | None:
    """The config the live app process read (None if it does not run)."""
    try:
        data = json.loads((host.dir / "apps" / APP / "state" / "running.json").read_text())
        os.kill(int(data["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return data["config"]  # type: ignore[no-any-return]


def host_running(fleet: Fleet, reload: str = "") -> Host:
    fleet.assign(APP, poll=POLL)
    publish_config_app(fleet, reload=reload)
    host = fleet.add_host()
    host.start()
    wait_until(lambda: running_config(host) == {}, what="demo running with no config")
    wait_until(lambda: host.journal(APP)["phase"] == "idle", what="demo installed")
    return host


def set_config(fleet: Fleet, doc: dict[str, Any], *args: str) -> dict[str, Any]:
    path = fleet.root / f"config-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(doc))
    out: dict[str, Any] = fleet.json("config", "set", APP, str(path), *args)
    return out


def within(seconds: float, predicate: Callable[[], bool], what: str) -> float:
    start = time.monotonic()
    wait_until(predicate, timeout_s=30, what=what)
    took = time.monotonic() - start
    assert took <= seconds, f"{what} after {took:.2f}s (want <= {seconds}s)"
    return took


def app_row(fleet: Fleet, host: Host) -> dict[str, Any]:
    return fleet.agent_app(host, APP)


def shown_failure(fleet: Fleet, host: Host) -> str:
    """The failure `fleet list` shows for the app ('' if it shows none)."""
    row = app_row(fleet, host)
    reason = row.get("reason") or {}
    return str(reason.get("error", "")) if reason.get("code") == "failed" else ""


def held_directive(host: Host) -> dict[str, Any]:
    data = json.loads((host.dir / "state" / "directives.json").read_text())
    [directive] = [d for d in data["apps"] if d["app"] == APP]
    return directive  # type: ignore[no-any-return]


def test_a_config_change_takes_effect_within_2s_on_a_60s_poll(fleet: Fleet) -> None:
    host = host_running(fleet)
    made = set_config(fleet, {"greeting": "hello"})
    assert (made["version"], made["target"]) == (1, f"{APP}/_config/1")
    within(EFFECT_S, lambda: running_config(host) == {"greeting": "hello"}, "config 1 in effect")
    written = host.dir / "apps" / APP / "config.json"
    assert json.loads(written.read_text()) == {"greeting": "hello"}

    set_config(fleet, {"greeting": "bonjour"})
    within(EFFECT_S, lambda: running_config(host) == {"greeting": "bonjour"}, "config 2")
    wait_until(lambda: app_row(fleet, host).get("state") == "running", what="running shown")

    history = fleet.json("config", "history", APP)
    assert [v["version"] for v in history] == [2, 1]
    assert fleet.cli("config", "get", APP, "--version", "1").stdout == '{"greeting": "hello"}'
    back = fleet.json("config", "rollback", APP, "--to", "1")
    assert (back["version"], back["rollback_of"]) == (3, 1)  # versions only go up
    within(EFFECT_S, lambda: running_config(host) == {"greeting": "hello"}, "rolled back to 1")


def app_pid(host: Host) -> int:
    return int(json.loads((host.dir / "apps" / APP / "state" / "running.json").read_text())["pid"])


def test_an_app_with_a_reload_signal_is_signalled_not_restarted(fleet: Fleet) -> None:
    host = host_running(fleet, reload="HUP")
    pid = app_pid(host)
    set_config(fleet, {"greeting": "hello"})
    within(EFFECT_S, lambda: running_config(host) == {"greeting": "hello"}, "config 1 read")
    assert app_pid(host) == pid  # the same process read it again on SIGHUP
    wait_until(lambda: "demo: config 1 healthy" in host.log_text(), what="config 1 judged")
    assert "config 1 written, SIGHUP sent" in host.log_text()


def test_a_config_that_breaks_the_app_is_rolled_back_reported_and_not_resent(
    fleet: Fleet,
) -> None:
    host = host_running(fleet)
    set_config(fleet, {"greeting": "hello"})
    wait_until(lambda: running_config(host) == {"greeting": "hello"}, what="config 1")
    wait_until(lambda: host.log_text().count("config 1 healthy") == 1, what="config 1 judged")

    set_config(fleet, {"crash": True})

    wait_until(lambda: "config 2 rolled back" in shown_failure(fleet, host), what="failure shown")
    wait_until(lambda: running_config(host) == {"greeting": "hello"}, what="config 1 back")
    assert json.loads((host.dir / "apps" / APP / "config.json").read_text()) == {
        "greeting": "hello"
    }
    shown = fleet.json("fleet", "show", host.name)
    [report] = [r for r in shown["reports"] if "config 2" in r["reason"]]
    assert report["outcome"] == "rolled_back"
    assert "fatal: bad config {'crash': True}" in report["log_tail"]  # the app's own words

    # Not sent again: the directives the agent now holds name no config 2; a check-in
    # forced by a command gets the same answer, and the agent fetched config 2 once.
    wait_until(lambda: held_directive(host).get("config_version") is None, what="not resent")
    fleet.cli("command", "send", host.name, "check-now")
    wait_until(lambda: "checking in now" in host.log_text(), what="checked in")
    wait_until(
        lambda: all(c["state"] == "done" for c in fleet.json("command", "list")), what="acked"
    )
    assert held_directive(host).get("config_version") is None
    assert host.log_text().count("fetching config 2") == 1
    assert running_config(host) == {"greeting": "hello"}

    # A newer good config goes out as usual
    set_config(fleet, {"greeting": "hi"})
    within(EFFECT_S, lambda: running_config(host) == {"greeting": "hi"}, "config 3")


def test_a_config_altered_on_the_servers_disk_is_refused(fleet: Fleet) -> None:
    host = host_running(fleet)
    assert host.stop() == 0  # the agent hears of the config only after the edit
    set_config(fleet, {"greeting": "hello"})
    [stored] = (fleet.server_dir / "tuf" / "targets" / APP / "_config").glob("*.1")
    tampered = json.dumps({"greeting": "HELLO"}).encode()
    assert len(tampered) == stored.stat().st_size  # same length: only the hash can tell
    stored.write_bytes(tampered)
    host.start()
    wait_until(lambda: running_config(host) == {}, what="demo running again")

    wait_until(lambda: "config 1 refused" in shown_failure(fleet, host), what="refusal shown")
    assert "hash mismatch" in shown_failure(fleet, host)
    assert running_config(host) == {}  # the app never saw the altered document
    assert json.loads((host.dir / "apps" / APP / "config.json").read_text()) == {}
    assert not list((host.dir / "apps" / APP / "configs").glob("1*"))


def test_a_trial_cut_by_a_sigkill_is_applied_and_judged_again(fleet: Fleet) -> None:
    fleet.assign(APP, poll=POLL)
    src = fleet.root / "releases" / "slow-trial"
    src.mkdir(parents=True)
    (src / "app.py").write_text(CONFIG_APP)
    (src / "uptend.toml").write_text(  # a long trial: the kill lands inside it
        f'[app]\ncommand = ["{sys.executable}", "app.py"]\n\n[health]\nprobation = 3\n'
    )
    fleet.cli("release", "publish", APP, "1.0", str(src))
    host = fleet.add_host()
    host.start()
    wait_until(lambda: running_config(host) == {}, timeout_s=60, what="demo running")
    wait_until(lambda: host.journal(APP)["phase"] == "idle", what="installed")
    set_config(fleet, {"greeting": "hello"})
    wait_until(lambda: "config 1 written, restarting" in host.log_text(), what="trial begun")
    state = json.loads((host.dir / "state" / "config" / f"{APP}.json").read_text())
    assert state["trying"] == 1  # journaled before the effect
    host.kill()
    assert "config 1 healthy" not in host.log_text()
    host.start()
    wait_until(lambda: "demo: config 1 healthy" in host.log_text(), what="judged after restart")
    state = json.loads((host.dir / "state" / "config" / f"{APP}.json").read_text())
    assert (state["applied"], state["trying"]) == (1, None)
    took = host.log_text().split("demo: config 1 healthy")[0].rsplit("started demo 1.0", 1)
    assert len(took) == 2  # judged after the restart that re-applied it
    wait_until(lambda: running_config(host) == {"greeting": "hello"}, what="config 1 in effect")
