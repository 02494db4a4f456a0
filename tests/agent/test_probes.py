"""The HTTP health probe against real sockets on 127.0.0.1: 2xx is healthy, anything else
(another status, a redirect, a refusal, silence, a drip-fed answer, garbage) is a reason."""

import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from uptend.agent.probes import http_probe

Serve = Callable[[socket.socket, bytes], None]  # a connection and the request read


@pytest.fixture
def server() -> Iterator[Callable[[Serve], str]]:
    """Start a one-port server whose connections `serve` handles; yields its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def start(serve: Serve) -> str:
        def loop() -> None:
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with conn:
                    serve(conn, conn.recv(4096))

        threading.Thread(target=loop, daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}"

    yield start
    stop.set()
    listener.close()


def answer(raw: bytes) -> Serve:
    return lambda conn, _request: conn.sendall(raw)


def silent(conn: socket.socket, _request: bytes) -> None:
    conn.recv(1)  # until the probe gives up and closes


def drip(conn: socket.socket, _request: bytes) -> None:
    """A byte every 50 ms, forever: each read alone is quick, the answer never ends."""
    try:
        while True:
            for byte in b"HTTP/1.1 200 OK":
                conn.sendall(bytes([byte]))
                threading.Event().wait(0.05)
    except OSError:
        return


CASES: dict[str, tuple[Serve, float, str | None]] = {
    "200": (answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), 5, None),
    "204-http10": (answer(b"HTTP/1.0 204 No Content\r\n\r\n"), 5, None),
    "500": (answer(b"HTTP/1.1 500 Internal Server Error\r\n\r\n"), 5, "answered 500"),
    "redirect-not-followed": (
        answer(b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\n\r\n"),
        5,
        "answered 302",
    ),
    "closed-without-answer": (
        lambda conn, _request: None,
        5,
        "closed the connection without an answer",
    ),
    "not-http": (answer(b"SSH-2.0-OpenSSH\r\n"), 5, "not HTTP: b'SSH-2.0-OpenSSH'"),
    "silent": (silent, 0.3, "failed: timed out"),
    "drip-fed": (drip, 0.3, "failed: timed out"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_http_probe(server: Callable[[Serve], str], case: str) -> None:
    serve, timeout_s, reason = CASES[case]
    url = server(serve) + "/health?x=1"
    why = http_probe(url, timeout_s)
    if reason is None:
        assert why is None
    else:
        assert why is not None
        assert why.startswith(f"http probe {url} ")
        assert reason in why


def test_http_probe_sends_a_plain_get_of_the_path(server: Callable[[Serve], str]) -> None:
    requests: list[bytes] = []

    def serve(conn: socket.socket, request: bytes) -> None:
        requests.append(request)
        conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n")

    base = server(serve)
    assert http_probe(base + "/health?deep=1", 5) is None
    host = base.removeprefix("http://")
    assert requests == [
        f"GET /health?deep=1 HTTP/1.0\r\nHost: {host}\r\n"
        "User-Agent: uptend-agent\r\nConnection: close\r\n\r\n".encode()
    ]


def test_refused_connection_is_unhealthy() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    why = http_probe(f"http://127.0.0.1:{port}/", 5)
    assert why is not None
    assert "Connection refused" in why


def test_https_to_a_plain_server_fails_with_the_tls_error(server: Callable[[Serve], str]) -> None:
    base = server(answer(b"HTTP/1.1 200 OK\r\n\r\n"))
    why = http_probe(base.replace("http://", "https://"), 5)
    assert why is not None
    assert why.startswith(f"http probe {base.replace('http://', 'https://')} failed: ")


def test_an_http_probe_loads_no_ssl_urllib3_or_pydantic() -> None:
    code = (
        "import socket, sys\n"
        "from uptend.agent.probes import http_probe\n"
        "s = socket.create_server(('127.0.0.1', 0))\n"
        "http_probe(f'http://127.0.0.1:{s.getsockname()[1]}/', 0.2)\n"
        "print(sorted({'ssl', 'urllib3', 'pydantic', 'http.client'} & set(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
