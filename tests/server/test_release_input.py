"""Publishing: versions in their PEP 440 normal form, equal versions refused however spelled,
and no upload left behind, whether the publish fails or the server is killed mid-upload."""

import json
import socket
from pathlib import Path

import httpx
import pytest

from tests.server.test_agent_api import admin_client, upload
from tests.support.fleet import Fleet, make_release, wait_until
from uptend import archive


def publish(fleet: Fleet, app: str, version: str) -> httpx.Response:
    where = fleet.root / "releases"
    bundle = where / f"{app}-{len(list(where.glob('*')))}.tar.gz"
    archive.pack_dir(make_release(where, "1.0"), bundle)
    with admin_client(fleet) as http:
        params = {"app": app, "version": version}
        return http.post("/api/v1/releases", params=params, content=bundle.read_bytes())


@pytest.mark.parametrize(
    ("first", "again"),
    [("1.0", ["1.00", "1.0.0", "1.0.0.0"]), ("1.1-0", ["1.1.post0", "1.1-post0", "1.1.0.post0"])],
)
def test_a_version_equal_under_pep_440_is_a_conflict(
    any_db_fleet: Fleet, first: str, again: list[str]
) -> None:
    assert publish(any_db_fleet, "eq", first).status_code == 201
    for spelling in again:
        response = publish(any_db_fleet, "eq", spelling)
        assert response.status_code == 409, (spelling, response.text)
        assert response.json()["error"] == "ConflictError"
    with admin_client(any_db_fleet) as http:
        assert len(http.get("/api/v1/releases", params={"app": "eq"}).json()) == 1
    src = make_release(any_db_fleet.root / "releases", "1.0")
    done = any_db_fleet.cli("release", "publish", "eq", again[0], str(src), check=False)
    assert done.returncode == 4, done.stdout + done.stderr  # ConflictError's exit code


def test_a_version_is_stored_and_signed_in_normal_form(any_db_fleet: Fleet) -> None:
    release = upload(any_db_fleet, "norm", "2.0RC1-1")
    assert release["version"] == "2.0rc1.post1"
    assert release["target"] == "norm/2.0rc1.post1/norm-2.0rc1.post1.tar.gz"
    role = any_db_fleet.server_dir / "tuf" / "metadata" / "1.app.norm.json"
    signed = json.loads(role.read_bytes())
    [(name, target)] = signed["signed"]["targets"].items()
    assert name == release["target"]
    assert target["custom"]["version"] == "2.0rc1.post1"


@pytest.mark.parametrize("bad", ["1" * 65, "1.0+local", "1!1.0", "latest", "v1.0"])
def test_a_non_version_is_refused_before_the_upload(fleet: Fleet, bad: str) -> None:
    response = publish(fleet, "nonv", bad)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "ConfigError"
    assert len(response.content) < 2048
    assert not list((fleet.server_dir / "uploads").glob("*"))


def uploads(fleet: Fleet) -> list[Path]:
    return sorted((fleet.server_dir / "uploads").glob("*.upload"))


def start_upload(fleet: Fleet, app: str, *, size: int, sent: int) -> socket.socket:
    """An upload that announces `size` bytes and sends `sent` of them, left open."""
    sock = socket.create_connection(("127.0.0.1", fleet.port))
    sock.sendall(
        f"POST /api/v1/releases?app={app}&version=1.0 HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {fleet.admin_token}\r\nContent-Length: {size}\r\n\r\n".encode()
    )
    sock.sendall(b"\0" * sent)
    wait_until(lambda: sum(p.stat().st_size for p in uploads(fleet)) >= sent, what="spooled")
    return sock


def test_a_kill_9_mid_upload_leaves_nothing_after_the_restart(fleet: Fleet) -> None:
    sock = start_upload(fleet, "killed", size=50 << 20, sent=4 << 20)
    assert fleet.server is not None
    fleet.server.kill()
    fleet.stop_server()
    sock.close()
    assert uploads(fleet)  # the server died with its upload half-written
    fleet.start_server()
    assert uploads(fleet) == []
    assert "removed 1 orphaned upload" in fleet.server_log()


def test_a_failed_publish_leaves_no_upload(fleet: Fleet) -> None:
    with admin_client(fleet) as http:
        params = {"app": "broken", "version": "1.0"}
        response = http.post("/api/v1/releases", params=params, content=b"not an archive" * 1000)
    assert response.status_code == 422, response.text
    assert uploads(fleet) == []
    sock = start_upload(fleet, "dropped", size=50 << 20, sent=1 << 20)
    sock.close()  # the publisher goes away mid-upload
    wait_until(lambda: uploads(fleet) == [], what="the dropped upload removed")


def test_an_upload_over_the_limit_is_a_413_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPTEND_MAX_UPLOAD_BYTES", str(1 << 20))
    with Fleet(tmp_path) as fleet, admin_client(fleet) as http:
        params = {"app": "big", "version": "1.0"}
        response = http.post("/api/v1/releases", params=params, content=b"\0" * (2 << 20))
        assert response.status_code == 413, response.text
        assert "UPTEND_MAX_UPLOAD_BYTES" in response.json()["hint"]

        def chunks() -> list[bytes]:  # no Content-Length: counted as it streams
            return [b"\0" * (64 << 10)] * 32

        response = http.post("/api/v1/releases", params=params, content=iter(chunks()))
        assert response.status_code == 413, response.text
        assert uploads(fleet) == []
        assert publish(fleet, "small", "1.0").status_code == 201


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM): a body read into memory shows even if freed."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def send_unread(fleet: Fleet, path: str, size: int, *, chunked: bool) -> bytes:
    """POST `size` bytes without a credential; what the server answers (it may stop reading)."""
    sock = socket.create_connection(("127.0.0.1", fleet.port))
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n".encode())
    piece = b"\0" * (1 << 20)
    if chunked:
        piece = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    try:
        for _ in range(size >> 20):
            sock.sendall(piece)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed without reading the rest
    sock.settimeout(30)
    try:
        answer = sock.recv(4096)
    except ConnectionResetError:
        answer = b""
    sock.close()
    return answer


def test_100_mb_unauthenticated_bodies_never_reach_memory(fleet: Fleet) -> None:
    """Once, 100 MB sent to the check-in took the server from 109 to 346 MB."""
    assert fleet.server is not None
    before = peak_rss_kib(fleet.server.pid)
    for path in ("/api/v1/checkin", "/api/v1/enroll", "/api/v1/releases?app=x&version=1.0"):
        for chunked in (False, True):
            answer = send_unread(fleet, path, 100 << 20, chunked=chunked)
            assert answer.split(b" ", 2)[1] in (b"401", b"413"), (path, chunked, answer[:200])
    grown_mib = (peak_rss_kib(fleet.server.pid) - before) / 1024
    assert grown_mib < 30, f"the server's peak RSS grew {grown_mib:.0f} MiB"
    assert httpx.get(f"{fleet.url}/healthz", timeout=30).status_code == 200
