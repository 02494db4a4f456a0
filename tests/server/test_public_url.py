"""Behind a load balancer: the URLs agents are told, and whose X-Forwarded-* is believed.

Real `uptend server run` processes; the "proxy" is this test writing the headers a proxy
would, from 127.0.0.1 (trusted or not, by `--trusted-proxy`).
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fleet import Fleet
from uptend.errors import ConfigError
from uptend.server.forwarded import client_address, networks

LB = {"X-Forwarded-Host": "lb.example.com", "X-Forwarded-Proto": "https"}


def started(root: Path, *args: str) -> Iterator[Fleet]:
    fleet = Fleet(root)
    fleet.server_args = list(args)
    with fleet:
        yield fleet


def enroll(fleet: Fleet, name: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    body = {"token": fleet.enroll_token, "name": name}
    response = httpx.post(f"{fleet.url}/api/v1/enroll", json=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


@pytest.fixture
def public(tmp_path: Path) -> Iterator[Fleet]:
    yield from started(
        tmp_path,
        "--public-url",
        "https://updates.example.com/uptend",
        "--artifacts-url",
        "https://cdn.example.net/uptend-targets",
        "--trusted-proxy",
        "127.0.0.1",
    )


def test_the_public_url_is_what_agents_are_told_whatever_the_host_header(public: Fleet) -> None:
    answer = enroll(public, "pub-1", {**LB, "Host": "internal:8470"})
    assert answer["metadata_url"] == "https://updates.example.com/uptend/tuf/metadata/"
    assert answer["targets_url"] == "https://cdn.example.net/uptend-targets/"


def test_forwarded_headers_count_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    for fleet in started(tmp_path / "trusting", "--trusted-proxy", "127.0.0.0/8"):
        answer = enroll(fleet, "fwd-1", {**LB, "Host": "internal:8470"})
        assert answer["metadata_url"] == "https://lb.example.com/tuf/metadata/"
        assert answer["targets_url"] == "https://lb.example.com/tuf/targets/"
        bad = enroll(fleet, "fwd-2", {"X-Forwarded-Host": "evil.example/x?y", "Host": "h:1"})
        assert bad["metadata_url"] == "http://h:1/tuf/metadata/"  # not a host: ignored
    for fleet in started(tmp_path / "plain"):
        answer = enroll(fleet, "fwd-3", LB)
        assert answer["metadata_url"] == f"{fleet.url}/tuf/metadata/"  # headers ignored


def test_rate_limits_follow_x_forwarded_for_only_from_a_trusted_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failed authentications are limited per source: a forged header escapes no limit."""
    monkeypatch.setenv("UPTEND_AUTH_FAILURES_PER_MIN", "3")

    def refused(fleet: Fleet, forwarded_for: str) -> int:
        headers = {"Authorization": "Bearer utc_" + "x" * 40, "X-Forwarded-For": forwarded_for}
        body = {"agent_version": "0.1.0"}
        url = f"{fleet.url}/api/v1/checkin"
        return httpx.post(url, json=body, headers=headers, timeout=30).status_code

    for fleet in started(tmp_path / "plain"):  # every forged address is still 127.0.0.1
        codes = [refused(fleet, f"203.0.113.{i}") for i in range(6)]
        assert 429 in codes, codes
    for fleet in started(tmp_path / "trusting", "--trusted-proxy", "127.0.0.1"):
        codes = [refused(fleet, f"10.9.9.9, 203.0.113.{i}") for i in range(6)]
        assert codes == [401] * 6, codes  # each relayed client has its own budget


def test_the_client_is_the_rightmost_untrusted_hop() -> None:
    trusted = networks(("10.0.0.0/8", "127.0.0.1"))
    assert client_address("127.0.0.1", "198.51.100.7, 10.1.1.1", trusted) == "198.51.100.7"
    assert client_address("127.0.0.1", "1.1.1.1, 198.51.100.7", trusted) == "198.51.100.7"
    assert client_address("192.0.2.1", "198.51.100.7", trusted) == "192.0.2.1"  # untrusted peer
    assert client_address("127.0.0.1", "not-an-ip", trusted) == "127.0.0.1"
    assert client_address("127.0.0.1", None, trusted) == "127.0.0.1"
    assert client_address("127.0.0.1", "10.2.2.2", trusted) == "10.2.2.2"  # all proxies
    assert client_address("127.0.0.1", "198.51.100.7", ()) == "127.0.0.1"  # none trusted
    with pytest.raises(ConfigError):
        networks(("10.0.0.0/33",))
