"""A TUF repository held in memory and served over real HTTP on 127.0.0.1.

python-tuf's RepositorySimulator is a FetcherInterface; this one sits behind a real
`ThreadingHTTPServer` on port 0, because the agent's fetch path (urllib3, timeouts, Range
resume, length caps) is part of what the tests attack (docs/faults.md, "How the tests make
faults"). Tests mutate the repository between client runs and turn on network faults:

    with RepoSim() as sim:
        sim.add_target("demo/1.0/demo-1.0.tar.gz", b"...")
        sim.publish()                      # targets, snapshot, timestamp: bump and re-sign
        sim.tamper(sim.target_url_path(name), b"other bytes")
        sim.cut_after_bytes = 100          # the next body stops after 100 bytes, once

Layout (consistent snapshots): /metadata/<N>.root.json, /metadata/timestamp.json,
/metadata/<N>.snapshot.json, /metadata/<N>.targets.json, /targets/<dir>/<sha256>.<name>.
Every request is recorded in `requests` with its Range header.
"""

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

TOP_LEVEL = (Root.type, Timestamp.type, Snapshot.type, Targets.type)
_ENDLESS_CAP_BYTES = 64 << 20  # an endless body still ends: a runaway test must not hang


@dataclass(frozen=True, slots=True)
class Request:
    path: str
    range: str | None


class RepoSim:
    """A signed TUF repository: four top-level roles, one ed25519 key each, consistent snapshots."""

    def __init__(self) -> None:
        self.expiry = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
        self.signers: dict[str, list[CryptoSigner]] = {}
        self.md: dict[str, Metadata[Any]] = {
            Root.type: Metadata(Root(expires=self.expiry, consistent_snapshot=True)),
            Timestamp.type: Metadata(Timestamp(expires=self.expiry)),
            Snapshot.type: Metadata(Snapshot(expires=self.expiry)),
            Targets.type: Metadata(Targets(expires=self.expiry)),
        }
        for role in TOP_LEVEL:
            signer = CryptoSigner.generate_ed25519()
            self.root.add_key(signer.public_key, role)
            self.signers[role] = [signer]
        # Published bytes per role, index = version - 1 (timestamp: the last one is served).
        self.published: dict[str, list[bytes]] = {role: [] for role in TOP_LEVEL}
        self.artifacts: dict[str, bytes] = {}  # URL path -> bytes
        self.overrides: dict[str, bytes] = {}  # URL path -> bytes served instead
        self.endless: set[str] = set()
        self.requests: list[Request] = []
        # Network faults, read by the handler on every request.
        self.ignore_range = False
        self.answer_416 = False
        self.cut_after_bytes: int | None = None  # once: close mid-body after this many bytes
        self.drip_interval_s: float | None = None  # send the body one byte per interval
        self._old_root_signers: list[CryptoSigner] = []
        self.closed = threading.Event()
        self._lock = threading.Lock()
        self.publish([Root.type, Targets.type, Snapshot.type, Timestamp.type])

        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    # -- context manager -------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.closed.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # -- addresses -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def metadata_url(self) -> str:
        return f"{self.base_url}/metadata/"

    @property
    def targets_url(self) -> str:
        return f"{self.base_url}/targets/"

    def target_url_path(self, name: str) -> str:
        info = self.targets.targets[name]
        dirname, sep, basename = name.rpartition("/")
        return f"/targets/{dirname}{sep}{info.hashes['sha256']}.{basename}"

    # -- the signed roles ------------------------------------------------------------------

    @property
    def root(self) -> Root:
        signed: Root = self.md[Root.type].signed
        return signed

    @property
    def timestamp(self) -> Timestamp:
        signed: Timestamp = self.md[Timestamp.type].signed
        return signed

    @property
    def snapshot(self) -> Snapshot:
        signed: Snapshot = self.md[Snapshot.type].signed
        return signed

    @property
    def targets(self) -> Targets:
        signed: Targets = self.md[Targets.type].signed
        return signed

    def root_bytes(self, version: int = 1) -> bytes:
        return self.published[Root.type][version - 1]

    # -- mutations -------------------------------------------------------------------------

    def add_target(
        self, name: str, data: bytes, custom: dict[str, Any] | None = None
    ) -> TargetFile:
        """Add (or replace) target `name` in targets metadata and serve its bytes; not published."""
        info = TargetFile.from_data(name, data, ["sha256"])
        if custom is not None:
            info.unrecognized_fields["custom"] = custom
        self.targets.targets[name] = info
        self.artifacts[self.target_url_path(name)] = data
        return info

    def publish(
        self,
        roles: Iterable[str] = (Targets.type, Snapshot.type, Timestamp.type),
        *,
        bump: bool = True,
    ) -> None:
        """Sign and serve `roles` in the order given, bumping each version once published.

        Publishing targets updates snapshot's meta, publishing snapshot updates timestamp's:
        publish them in the order targets, snapshot, timestamp.
        """
        with self._lock:
            for role in roles:
                md = self.md[role]
                if bump and self.published[role]:
                    md.signed.version += 1
                md.signatures.clear()
                signers = self.signers[role]
                if role == Root.type:
                    # A new root is signed by the old root keys too (spec 5.3.4).
                    signers = [*signers, *self._old_root_signers]
                    self._old_root_signers = []
                for signer in signers:
                    md.sign(signer, append=True)
                data = md.to_bytes(JSONSerializer(compact=True))
                if role == Timestamp.type:
                    self.published[role].append(data)
                else:
                    versions = self.published[role]
                    del versions[md.signed.version - 1 :]
                    versions.extend([b""] * (md.signed.version - 1 - len(versions)))
                    versions.append(data)
                if role == Targets.type:
                    self.snapshot.meta["targets.json"] = MetaFile(md.signed.version)
                if role == Snapshot.type:
                    self.timestamp.snapshot_meta = MetaFile(md.signed.version)

    def rotate_keys(self, role: str) -> CryptoSigner:
        """Give `role` a new key (the old one is dropped) and publish the new root."""
        signer = CryptoSigner.generate_ed25519()
        if role == Root.type:
            self._old_root_signers = list(self.signers[Root.type])
        for keyid in list(self.root.roles[role].keyids):
            self.root.revoke_key(keyid, role)
        self.root.add_key(signer.public_key, role)
        self.signers[role] = [signer]
        self.publish([Root.type])
        return signer

    def expire_timestamp(self) -> None:
        self.timestamp.expires = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
        self.publish([Timestamp.type])

    def tamper(self, path: str, data: bytes) -> None:
        """Serve `data` at URL path `path` instead of what the repository published."""
        self.overrides[path] = data

    def serve_endless(self, path: str) -> None:
        """Serve an endless body (no Content-Length) at URL path `path`."""
        self.endless.add(path)

    # -- serving ---------------------------------------------------------------------------

    def lookup(self, path: str) -> bytes | None:
        if path in self.overrides:
            return self.overrides[path]
        if path.startswith("/targets/"):
            return self.artifacts.get(path)
        prefix = "/metadata/"
        if not path.startswith(prefix) or not path.endswith(".json"):
            return None
        name = path[len(prefix) : -len(".json")]
        with self._lock:
            if name == Timestamp.type:
                return self.published[Timestamp.type][-1]
            version, _, role = name.partition(".")
            if role not in (Root.type, Snapshot.type, Targets.type) or not version.isdigit():
                return None
            versions = self.published[role]
            index = int(version) - 1
            if 0 <= index < len(versions) and versions[index]:
                return versions[index]
            return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sim: RepoSim) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.sim = sim

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-body (endless data, deadline) is expected here.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        pass

    def do_GET(self) -> None:
        sim = self.server.sim
        range_header = self.headers.get("Range")
        sim.requests.append(Request(self.path, range_header))
        if self.path in sim.endless:
            self._send_endless()
            return
        body = sim.lookup(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if range_header is not None and not sim.ignore_range:
            first = range_header.removeprefix("bytes=").removesuffix("-")
            if sim.answer_416 or not first.isdigit() or int(first) >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = int(first)
        payload = body[start:]
        if start:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        cut = sim.cut_after_bytes
        if cut is not None and cut < len(payload):
            sim.cut_after_bytes = None  # once, on the first body long enough to cut
            payload = payload[:cut]  # the connection closes after these bytes
        if sim.drip_interval_s is None:
            self.wfile.write(payload)
            return
        for i in range(len(payload)):
            if sim.closed.is_set():
                return
            self.wfile.write(payload[i : i + 1])
            self.wfile.flush()
            time.sleep(sim.drip_interval_s)

    def _send_endless(self) -> None:
        self.send_response(200)
        self.end_headers()
        chunk = b"\0" * 65536
        for _ in range(_ENDLESS_CAP_BYTES // len(chunk)):
            if self.server.sim.closed.is_set():
                return
            self.wfile.write(chunk)
