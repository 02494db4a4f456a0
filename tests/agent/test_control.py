"""The agent's control client over a real HTTP/1.1 server on 127.0.0.1.

What it must do: reuse one kept-alive connection, survive the server closing it between
check-ins, map error bodies back to their classes, and turn anything unexpected (bad
answers, oversized bodies, no server) into a TransientError.
"""

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from uptend.agent import wire
from uptend.agent.control import ControlClient
from uptend.agent.wire import AppDirective, CheckIn, Directives
from uptend.errors import ConfigError, ConflictError, TransientError


@dataclass
class Script:
    """What the server answers next, and what it saw."""

    answers: list[tuple[int, bytes]] = field(default_factory=list)
    connections: int = 0
    bodies: list[dict[str, object]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    close_after_each: bool = False


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            script.connections += 1
            super().setup()

        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            script.bodies.append(json.loads(self.rfile.read(length)))
            script.headers.append(dict(self.headers))
            status, body = script.answers.pop(0)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            if script.close_after_each:
                self.close_connection = True

        def log_message(self, *_args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}", script
    httpd.shutdown()
    httpd.server_close()


def directives(**extra: object) -> bytes:
    return json.dumps({"poll_interval_s": 5, "apps": [], **extra}).encode()


BODY = CheckIn(agent_version="0.1.0")


def test_check_ins_reuse_one_connection_and_send_the_held_generation(
    server: tuple[str, Script],
) -> None:
    url, script = server
    script.answers = [(200, directives(generation=7)), (200, directives(generation=8))]
    with closing(ControlClient(url, "secret")) as client:
        first = client.checkin(BODY, None)
        second = client.checkin(BODY, first)
    assert (first.generation, second.generation) == (7, 8)
    assert [b["generation"] for b in script.bodies] == [None, 7]
    assert script.headers[0]["Authorization"] == "Bearer secret"
    assert script.headers[0]["User-Agent"].startswith("uptend/")
    assert script.connections == 1


def test_unchanged_returns_the_directives_held(server: tuple[str, Script]) -> None:
    url, script = server
    held = Directives(poll_interval_s=5.0, apps=[AppDirective(app="demo", version="2.0")])
    script.answers = [(200, json.dumps({"poll_interval_s": 5, "unchanged": True}).encode())]
    with closing(ControlClient(url)) as client:
        assert client.checkin(BODY, held) is held


def test_a_connection_the_server_closed_is_replaced_quietly(server: tuple[str, Script]) -> None:
    url, script = server
    script.close_after_each = True
    script.answers = [(200, directives()), (200, directives())]
    with closing(ControlClient(url)) as client:
        client.checkin(BODY, None)
        client.checkin(BODY, None)
    assert script.connections == 2
    assert len(script.bodies) == 2  # each check-in sent once


def test_an_error_body_comes_back_as_its_class(server: tuple[str, Script]) -> None:
    url, script = server
    body = {"error": "ConflictError", "message": "busy", "hint": "wait"}
    script.answers = [(409, json.dumps(body).encode()), (200, directives())]
    request = wire.EnrollRequest(token="t", name="n")  # noqa: S106 - not a secret
    with closing(ControlClient(url)) as client:
        with pytest.raises(ConflictError, match="busy"):
            client.post("api/v1/enroll", request, wire.EnrollResponse)
        client.checkin(BODY, None)  # the connection is still good
    assert script.connections == 1


@pytest.mark.parametrize(("status", "error"), [(422, "ConfigError"), (413, "ConfigError")])
def test_a_refused_check_in_is_transient(
    server: tuple[str, Script], status: int, error: str
) -> None:
    """The agent keeps its apps running and retries; it does not stop on a 4xx."""
    url, script = server
    body = {"error": error, "message": "invalid request: body.apps", "hint": "see the schema"}
    script.answers = [(status, json.dumps(body).encode())]
    with (
        closing(ControlClient(url)) as client,
        pytest.raises(TransientError, match=r"refused the check-in: invalid request: body\.apps"),
    ):
        client.checkin(BODY, None)


@pytest.mark.parametrize(
    "answer",
    [b"<html>hello</html>", directives(poll_interval_s=-1), b" " * (wire.MAX_BODY_BYTES + 10)],
    ids=["not-json", "out-of-range", "oversized"],
)
def test_an_unexpected_answer_is_transient(server: tuple[str, Script], answer: bytes) -> None:
    url, script = server
    script.answers = [(200, answer)]
    with (
        closing(ControlClient(url)) as client,
        pytest.raises(TransientError, match="unexpected answer to api/v1/checkin"),
    ):
        client.checkin(BODY, None)


def test_no_server_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(TransientError, match="cannot reach the server") as e:
            ControlClient(f"http://127.0.0.1:{port}").checkin(BODY, None)
    assert "retries" in e.value.hint


def test_a_server_url_that_is_not_http_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="invalid server URL"):
        ControlClient("ftp://example.org")
