"""The agent's own settings, signed and set remotely, on a real agent (60 s group poll).

Real processes throughout: the server, the agent and its worker child (which fetches the
settings through python-tuf), its app, and the tamper proxy the agent checks in through,
which counts its check-ins. `uptend config set uptend-agent FILE` with a shorter poll
interval takes effect (the agent checks in every second instead of every minute); settings
with which the agent can no longer check in (a control-plane address where nothing
listens) are rolled back once their bound has passed, reported, and not sent again.
"""

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.test_agent_loop import alive_pid
from tests.e2e.test_hostile import edit_agent_json
from tests.support.fleet import Fleet, Host, wait_until
from tests.support.tamper_proxy import TamperProxy

APP = "demo"
POLL = 60.0
BOUND_S = 3.0  # agent.json's settings_confirm_s


@pytest.fixture
def proxy(fleet: Fleet) -> Iterator[TamperProxy]:
    with TamperProxy(fleet.url) as p:
        yield p


def checkins(proxy: TamperProxy) -> int:
    return len([s for s in proxy.requests_for("/api/v1/checkin") if s.status == 200])


def set_settings(fleet: Fleet, doc: dict[str, Any]) -> dict[str, Any]:
    path = fleet.root / f"settings-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(doc))
    out: dict[str, Any] = fleet.json("config", "set", "uptend-agent", str(path))
    return out


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def held(host: Host) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((host.dir / "state" / "directives.json").read_text())
    return data


def test_a_poll_interval_change_takes_effect_and_a_breaking_setting_is_rolled_back(
    fleet: Fleet, proxy: TamperProxy
) -> None:
    fleet.assign(APP, poll=POLL)
    fleet.publish(APP, "1.0", probation=0.3)
    host = fleet.add_host()
    edit_agent_json(host, server=proxy.url, settings_confirm_s=BOUND_S)
    host.start()
    wait_until(lambda: alive_pid(host, APP) is not None, what="demo running")
    wait_until(lambda: host.journal(APP)["phase"] == "idle", what="demo installed")

    # 1. every second instead of every minute, once the settings are confirmed
    made = set_settings(fleet, {"poll_interval_s": 1, "log_level": "debug"})
    assert made["target"] == "uptend-agent/_config/1"
    wait_until(lambda: "agent settings 1 confirmed" in host.log_text(), what="settings 1 in force")
    before = checkins(proxy)
    wait_until(lambda: checkins(proxy) >= before + 3, timeout_s=10, what="three polls")
    assert "agent settings 1 in force; on trial for 3s" in host.log_text()
    assert held(host)["settings_version"] == 1
    state = json.loads((host.dir / "state" / "settings.json").read_text())["state"]
    assert (state["applied"], state["trying"]) == (1, None)
    assert not (host.dir / "apps" / "uptend-agent").exists()  # not an app on this host

    # 2. an address where nothing listens: no check-in succeeds, so settings 1 come back
    dead = f"http://127.0.0.1:{closed_port()}/"
    set_settings(fleet, {"poll_interval_s": 1, "server": dead})
    wait_until(lambda: f"checking in with {dead} from now on" in host.log_text(), what="tried")
    wait_until(
        lambda: "agent settings 2 rolled back" in host.log_text(), timeout_s=30, what="given up"
    )

    def reports() -> list[dict[str, Any]]:
        shown = fleet.json("fleet", "show", host.name)["reports"]
        return [r for r in shown if r["app"] == "uptend-agent"]

    wait_until(lambda: len(reports()) == 1, what="the rollback reported")
    [report] = reports()
    assert report["outcome"] == "rolled_back"
    assert f"no check-in succeeded within {BOUND_S:g}s with them" in report["reason"]
    assert f"cannot reach the server at {dead}" in report["log_tail"]
    state = json.loads((host.dir / "state" / "settings.json").read_text())["state"]
    assert (state["applied"], state["trying"], state["bad"]) == (1, None, [2])

    # 3. checking in through the proxy again, every second (settings 1), and not sent 2 again
    after = checkins(proxy)
    wait_until(lambda: checkins(proxy) >= after + 3, timeout_s=10, what="polls again")
    assert held(host).get("settings_version") is None
    assert host.log_text().count("fetching agent settings 2") == 1
    assert len(reports()) == 1
    assert alive_pid(host, APP) is not None  # the apps ran on throughout
