"""A lean HTTP/1.1 client for in-process hosts: keep-alive connections to one server, POST only.

`SimFleet` drives hundreds of hosts from one event loop, so what a request costs the test
process bounds how fast they can check in. httpx cost ~17 ms of CPU a request there (its pool
scans every waiting request, and without sniffio installed httpcore retries a failing import
on every call), so 1,000 hosts could not keep a 5 s poll and the rollout bench measured the
driver, not the server. This one writes the request and reads the answer on plain asyncio
streams: enough for the server's JSON answers (Content-Length or chunked), nothing more.
"""

import asyncio
from urllib.parse import urlsplit

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class StaleConnectionError(ConnectionError):
    """A kept-alive connection the server had closed: nothing of the answer was read."""


class KeepAlive:
    """Up to `size` connections to `url`'s host, each reused while the server keeps it open."""

    def __init__(self, url: str, size: int, timeout_s: float = 60.0) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None, url
        assert parts.port is not None, url
        self.host, self.port = parts.hostname, parts.port
        self.timeout_s = timeout_s
        self._idle: list[Conn] = []
        self._slots = asyncio.Semaphore(size)

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """(status, body) of one POST; a stale kept-alive connection is replaced once."""
        async with self._slots:
            reused = bool(self._idle)
            conn = self._idle.pop() if reused else await self._open()
            try:
                status, data, keep = await asyncio.wait_for(
                    _exchange(conn, self.host, path, body, headers), self.timeout_s
                )
            except StaleConnectionError:
                conn[1].close()
                if not reused:
                    raise
                conn = await self._open()  # closed by the server while idle: never reached it
                status, data, keep = await asyncio.wait_for(
                    _exchange(conn, self.host, path, body, headers), self.timeout_s
                )
            except BaseException:
                conn[1].close()
                raise
            if keep:
                self._idle.append(conn)
            else:
                conn[1].close()
            return status, data

    async def _open(self) -> Conn:
        return await asyncio.open_connection(self.host, self.port)

    async def aclose(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


async def _exchange(
    conn: Conn, host: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, bytes, bool]:
    reader, writer = conn
    head = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
        line = await reader.readline()
    except (ConnectionError, OSError) as e:
        raise StaleConnectionError(str(e)) from None
    if not line:
        raise StaleConnectionError("the server closed the connection")
    status = int(line.split(b" ", 2)[1])
    fields: dict[bytes, bytes] = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
        data = b""
        while size := int((await reader.readline()).split(b";")[0], 16):
            data += await reader.readexactly(size)
            await reader.readexactly(2)  # the CRLF after each chunk
        await reader.readline()  # the CRLF after the last (no trailers from this server)
    else:
        data = await reader.readexactly(int(fields.get(b"content-length", b"0")))
    return status, data, fields.get(b"connection", b"").lower() != b"close"
