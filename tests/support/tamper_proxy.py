"""A small HTTP proxy on 127.0.0.1 that forwards to the server and injects scripted faults.

Agents are pointed at it through `metadata_url`/`targets_url` in their agent.json, so the
check-in still goes straight to the server while the TUF files pass through here. Each
fault names a substring of the request path and how many requests it hits (docs/faults.md,
"How the tests make faults"):

- `endless(path)`: 200 with no Content-Length and a body that never ends (docs/faults.md A5);
- `cut(path, after)`: the upstream status and headers (with the full Content-Length), then
  only the first `after` bytes of the body, then the connection is closed (docs/faults.md C20);
- `slow(path, bytes_per_s)`: the whole body, throttled (a large download that takes a while);
- `drop_answer(path, body_has)`: a POST whose body holds `body_has` is forwarded and answered
  upstream, then the connection is closed without a byte back (the answer is lost after the
  server acted on the request). POSTs are otherwise forwarded untouched.

Every request is logged as (path, Range header, status sent) for assertions, and the body
bytes each one really sent as (path, Range header, bytes) in `served`.
"""

import http.client
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


@dataclass
class Fault:
    path: str  # a substring of the request path
    kind: str  # "endless" | "cut" | "slow"
    times: int  # requests left to hit; < 0: all of them
    after: int = 0  # for "cut": body bytes sent before the connection is closed
    rate: int = 0  # for "slow": body bytes per second
    body_has: bytes = b""  # for "drop": a substring of the request body


@dataclass(frozen=True, slots=True)
class Seen:
    path: str
    range: str | None
    status: int
    fault: str  # "" when the request was forwarded untouched


class TamperProxy:
    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        assert parsed.hostname is not None, upstream
        assert parsed.port is not None, upstream
        self.upstream = (parsed.hostname, parsed.port)
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self.served: list[tuple[str, str | None, int]] = []
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "TamperProxy":
        self._thread.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def endless(self, path: str, times: int = -1) -> None:
        with self._lock:
            self.faults.append(Fault(path, "endless", times))

    def cut(self, path: str, after: int, times: int = 1) -> None:
        with self._lock:
            self.faults.append(Fault(path, "cut", times, after))

    def slow(self, path: str, bytes_per_s: int, times: int = -1) -> None:
        with self._lock:
            self.faults.append(Fault(path, "slow", times, rate=bytes_per_s))

    def drop_answer(self, path: str, body_has: bytes, times: int = 1) -> None:
        with self._lock:
            self.faults.append(Fault(path, "drop", times, body_has=body_has))

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def served_for(self, path: str) -> list[tuple[str | None, int]]:
        """(Range header, body bytes sent) of each request for `path`, so far."""
        with self._lock:
            return [(rng, n) for p, rng, n in self.served if path in p]

    def requests_for(self, path: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if path in s.path]

    def _take(self, path: str, body: bytes | None = None) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if (fault.kind == "drop") is (body is None):
                    continue
                if body is not None and fault.body_has not in body:
                    continue
                if fault.path in path and fault.times != 0:
                    fault.times -= 1
                    return fault
        return None

    def _log(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)


def _handler_for(proxy: TamperProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection: a cut is a close

        def do_GET(self) -> None:
            fault = proxy._take(self.path)
            rng = self.headers.get("Range")
            if fault is not None and fault.kind == "endless":
                proxy._log(Seen(self.path, rng, 200, "endless"))
                self._endless()
                return
            conn = http.client.HTTPConnection(*proxy.upstream, timeout=30)
            try:
                headers = {"Accept-Encoding": "identity"}
                if rng is not None:
                    headers["Range"] = rng
                conn.request("GET", self.path, headers=headers)
                response = conn.getresponse()
                body = response.read()
                proxy._log(Seen(self.path, rng, response.status, fault.kind if fault else ""))
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in ("connection", "server", "date"):
                        self.send_header(name, value)
                self.end_headers()
                if fault is not None and fault.kind == "cut":
                    self.wfile.write(body[: fault.after])
                    self.wfile.flush()
                    return  # HTTP/1.0: the handler closes the connection now
                if fault is not None and fault.kind == "slow":
                    self._slowly(body, fault.rate, rng)
                    return
                self.wfile.write(body)
                with proxy._lock:
                    proxy.served.append((self.path, rng, len(body)))
            except OSError:
                return  # the agent went away
            finally:
                conn.close()

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            fault = proxy._take(self.path, body)
            conn = http.client.HTTPConnection(*proxy.upstream, timeout=120)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request("POST", self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                proxy._log(Seen(self.path, None, response.status, fault.kind if fault else ""))
                if fault is not None:  # "drop": the server acted; its answer is lost
                    return
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in ("connection", "server", "date", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                return
            finally:
                conn.close()

        def _slowly(self, body: bytes, rate: int, rng: str | None) -> None:
            chunk = max(1, rate // 20)
            with proxy._lock:
                proxy.served.append((self.path, rng, 0))
                index = len(proxy.served) - 1
            for start in range(0, len(body), chunk):
                if proxy.closing.is_set():
                    return
                self.wfile.write(body[start : start + chunk])
                self.wfile.flush()
                with proxy._lock:
                    path, rng, sent = proxy.served[index]
                    proxy.served[index] = (path, rng, sent + len(body[start : start + chunk]))
                time.sleep(chunk / rate)  # the throttle itself: bytes per second

        def _endless(self) -> None:
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                chunk = b" " * 65536
                while not proxy.closing.is_set():
                    self.wfile.write(chunk)
            except OSError:
                return  # the agent stopped reading: what we wanted

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    return Handler


__all__ = ["Seen", "TamperProxy"]
