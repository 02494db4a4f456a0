"""Load shaping on a real server: a busy server asks for `retry_after`, a full one sheds 503.

The server's limit is set small (UPTEND_MAX_IN_FLIGHT=4: busy from 2 in flight) and held
requests fill it: connections that send a check-in's headers and not its body are in flight
until they finish. The agent's own runner is driven one cycle at a time against it, and the
delay it returns (seconds to its next check-in) is what it honours.
"""

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fleet import Fleet, wait_until
from uptend import __version__
from uptend.agent.layout import Layout
from uptend.agent.runner import Agent as Runner
from uptend.agent.wire import CheckIn

RETRY_AFTER = 7


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fleet]:
    monkeypatch.setenv("UPTEND_MAX_IN_FLIGHT", "4")
    monkeypatch.setenv("UPTEND_RETRY_AFTER", str(RETRY_AFTER))
    with Fleet(tmp_path) as f:
        yield f


def stats(fleet: Fleet) -> tuple[int, dict[str, object]]:
    """(status, body) of the stats route: 503 once the server sheds."""
    request = urllib.request.Request(
        f"{fleet.url}/api/v1/server/stats",
        headers={"Authorization": f"Bearer {fleet.admin_token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {"retry_after": e.headers.get("Retry-After"), **json.loads(e.read())}


def hold(fleet: Fleet, credential: str) -> socket.socket:
    """A slow agent's check-in whose body never comes: in flight until its connection closes."""
    s = socket.create_connection(("127.0.0.1", fleet.port))
    head = f"POST /api/v1/checkin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {credential}\r\n"
    s.sendall(head.encode() + b"Content-Length: 50\r\n\r\n")
    return s


def in_flight(fleet: Fleet) -> int:
    code, body = stats(fleet)
    return int(body["in_flight"]) if code == 200 else -1  # type: ignore[call-overload]


def test_a_busy_server_asks_for_retry_after_and_a_full_one_sheds_503(fleet: Fleet) -> None:
    fleet.assign(poll=1.0)
    host = fleet.add_host()
    runner = Runner(Layout(host.dir))
    credential = runner.config.credential
    assert credential is not None
    try:
        assert runner.cycle() <= 1.5  # idle: the poll interval (jittered)
        assert stats(fleet)[1]["in_flight"] == 1  # only the stats request itself

        held = [hold(fleet, credential)]
        wait_until(lambda: in_flight(fleet) == 2, what="one held request")
        assert runner.control.checkin(runner_body(runner), None).retry_after_s == RETRY_AFTER
        assert runner.cycle() >= RETRY_AFTER  # busy: the agent waits as long as it is told
        assert runner.directives is not None
        assert runner.directives.retry_after_s is None

        held += [hold(fleet, credential) for _ in range(3)]
        wait_until(lambda: stats(fleet)[0] == 503, what="the server full")
        code, body = stats(fleet)
        assert (code, body["retry_after"], body["error"]) == (
            503,
            str(RETRY_AFTER),
            "TransientError",
        )
        assert "busy" in str(body["message"])
        assert runner.cycle() >= RETRY_AFTER  # shed: it waits out Retry-After, not its backoff
        assert runner.checkin_failures == 1

        for s in held:
            s.close()
        wait_until(lambda: in_flight(fleet) == 1, what="the held requests gone")
        assert runner.cycle() <= 1.5  # no longer busy: back to its poll
        code, body = stats(fleet)
        assert code == 200
        assert body["shed"] == 3  # while full: two stats requests and the check-in
        assert "Traceback" not in fleet.server_log()
    finally:
        runner.control.close()


def runner_body(runner: Runner) -> CheckIn:
    return CheckIn(agent_version=__version__, apps=runner.statuses())
