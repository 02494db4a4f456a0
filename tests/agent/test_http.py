"""One retry policy: the agent's HTTP pool never retries on its own (the decision layer does).

A fault of a download or a metadata fetch goes up at once as one error; `decide` retries it
after the backoff. Redirects (CDNs) are still followed. Real sockets on 127.0.0.1.
"""

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from tests.agent.tuf_repo import DATA, NAME, get_info, target_requests
from tests.reposim import RepoSim
from uptend.agent import http as agent_http
from uptend.agent.download import download_target
from uptend.errors import TransientError


def test_the_pool_gives_up_at_the_first_fault_of_any_kind() -> None:
    """urllib3's own accounting with the agent's policy: no fault gets a second attempt."""
    retries = agent_http.new_pool().connection_pool_kw["retries"]
    assert isinstance(retries, urllib3.Retry)
    url = "http://127.0.0.1/x"
    faults = [
        NewConnectionError(None, "refused"),  # type: ignore[arg-type]
        ConnectTimeoutError("connect timed out"),
        ReadTimeoutError(None, url, "read timed out"),  # type: ignore[arg-type]
        ProtocolError("connection reset"),
    ]
    for fault in faults:
        with pytest.raises(MaxRetryError):
            retries.increment("GET", url, error=fault)


@pytest.fixture
def hang_up() -> Iterator[tuple[str, list[int]]]:
    """A TCP server that accepts each connection and closes it at once; counts them."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/t", accepted
    finally:
        listener.close()
        thread.join(5)


def test_a_connection_cut_before_the_answer_is_one_attempt(
    sim: RepoSim, md_dir: Path, tmp_path: Path, hang_up: tuple[str, list[int]]
) -> None:
    url, accepted = hang_up
    s, _ = get_info(sim, md_dir)
    with s:
        info = s.target(NAME)
        with pytest.raises(TransientError, match="connection broken"):
            download_target(info, url, tmp_path / "demo.partial")
    assert len(accepted) == 1


def test_a_redirect_is_followed(sim: RepoSim, md_dir: Path, tmp_path: Path) -> None:
    s, real = get_info(sim, md_dir)

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", real)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    cdn = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=cdn.serve_forever, daemon=True)
    thread.start()
    partial = tmp_path / "demo.partial"
    try:
        with s:
            download_target(s.target(NAME), f"http://127.0.0.1:{cdn.server_port}/x", partial)
    finally:
        cdn.shutdown()
        cdn.server_close()
    assert partial.read_bytes() == DATA
    assert len(target_requests(sim)) == 1
