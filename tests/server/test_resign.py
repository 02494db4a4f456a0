"""The running server re-signs timestamp.json before it expires, with no admin action.

Promise 2 (docs/architecture.md): expired metadata must never stop agents. The server is
started with a 2-second timestamp lifetime and a 0.1-second re-signing check (the
`UPTEND_TIMESTAMP_EXPIRY_S` and `UPTEND_RESIGN_CHECK_S` hooks of `uptend.server.settings`,
read by `server init` and `server run` alike); agents see each new timestamp over HTTP.
"""

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from tuf.api.metadata import Metadata

from tests.support.fleet import Fleet, wait_until
from uptend.errors import ConfigError
from uptend.server.settings import RESIGN_CHECK_ENV, TIMESTAMP_EXPIRY_ENV, Settings


@pytest.fixture
def short_lived(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fleet]:
    monkeypatch.setenv(TIMESTAMP_EXPIRY_ENV, "2")
    monkeypatch.setenv(RESIGN_CHECK_ENV, "0.1")
    with Fleet(tmp_path) as fleet:
        yield fleet


def timestamp(fleet: Fleet) -> tuple[int, datetime, int]:
    """(version, expiry, snapshot version) of the timestamp.json the server serves now."""
    response = httpx.get(f"{fleet.url}/tuf/metadata/timestamp.json", timeout=30)
    response.raise_for_status()
    md: Metadata[Any] = Metadata.from_bytes(response.content)
    return md.signed.version, md.signed.expires, md.signed.snapshot_meta.version


def test_timestamp_is_re_signed_while_the_server_runs(short_lived: Fleet) -> None:
    first_version, first_expiry, snapshot = timestamp(short_lived)
    seen = [(first_version, first_expiry)]

    def moved_twice() -> bool:
        version, expiry, _ = timestamp(short_lived)
        if (version, expiry) != seen[-1]:
            seen.append((version, expiry))
        return len(seen) >= 3

    wait_until(moved_twice, timeout_s=30, what="two re-signed timestamps")
    versions = [v for v, _ in seen]
    expiries = [e for _, e in seen]
    assert versions == sorted(set(versions))  # strictly increasing
    assert expiries == sorted(set(expiries))  # each expiry later than the last
    assert timestamp(short_lived)[2] == snapshot  # only the timestamp moved: no new snapshot
    # re-signed from what is on disk, which is what a CDN would copy
    on_disk = Metadata.from_bytes(
        (short_lived.server_dir / "tuf" / "metadata" / "timestamp.json").read_bytes()
    )
    assert on_disk.signed.version >= versions[-1]
    assert "re-signed timestamp" in short_lived.server_log()


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan", "inf"])
def test_a_bad_lifetime_in_the_environment_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(TIMESTAMP_EXPIRY_ENV, value)
    with pytest.raises(ConfigError, match=TIMESTAMP_EXPIRY_ENV):
        Settings(data_dir=tmp_path)
