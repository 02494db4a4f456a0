"""Where the server keeps things: one data dir, a database URL, TUF lifetimes.

Two environment variables shorten the timestamp role's life, for tests and for operators who
want a tighter freeze-attack window; both `server init` and `server run` read them:

- `UPTEND_TIMESTAMP_EXPIRY_S`: lifetime of `timestamp.json` in seconds (default 86400); the
  server re-signs it once less than half of that is left.
- `UPTEND_RESIGN_CHECK_S`: seconds between the server's re-signing checks (default 60).

`UPTEND_LASTSEEN_FLUSH_S` sets how often `server run` writes the agents' last-seen times
(default 5; see `uptend.server.lastseen`).

Rate limits, per server process (`uptend.server.ratelimit`; 0 turns one off):
`UPTEND_AUTH_FAILURES_PER_MIN` failed authentications per source address and per token id
(default 60), `UPTEND_ENROLLS_PER_MIN` enrollments per source address (default 1200).

Two cap request bodies, counted as they arrive (413 beyond; see `uptend.server.bodylimit`):

- `UPTEND_MAX_BODY_BYTES`: any request but a release upload (default 4 MiB: a check-in at
  every bound of `uptend.protocol.limits` fits).
- `UPTEND_MAX_UPLOAD_BYTES`: the archive of a release (default 2 GiB).
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

from uptend.errors import ConfigError
from uptend.protocol import limits
from uptend.server.ratelimit import Limits, Rate
from uptend.server.storage.db import sqlite_url
from uptend.server.tuf_repo import Expiry

MAX_UNPACKED_BYTES = 8 << 30
MAX_FILES = 200_000

TIMESTAMP_EXPIRY_ENV = "UPTEND_TIMESTAMP_EXPIRY_S"
RESIGN_CHECK_ENV = "UPTEND_RESIGN_CHECK_S"
LASTSEEN_FLUSH_ENV = "UPTEND_LASTSEEN_FLUSH_S"
AUTH_FAILURES_ENV = "UPTEND_AUTH_FAILURES_PER_MIN"
ENROLLS_ENV = "UPTEND_ENROLLS_PER_MIN"
MAX_BODY_ENV = "UPTEND_MAX_BODY_BYTES"
MAX_IN_FLIGHT_ENV = "UPTEND_MAX_IN_FLIGHT"  # requests served at once; more are answered 503
RETRY_AFTER_ENV = "UPTEND_RETRY_AFTER"  # seconds a busy server asks agents to wait
MAX_UPLOAD_ENV = "UPTEND_MAX_UPLOAD_BYTES"


def _env_seconds(name: str, default: float) -> float:
    text = os.environ.get(name, "")
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 10 * 365 * 86400:  # also refuses nan and inf
        raise ConfigError(
            f"{name}={text!r} must be a number of seconds between 0 and ten years",
            hint=f"unset {name}",
        )
    return value


def _env_bytes(name: str, default: int) -> int:
    text = os.environ.get(name, "")
    if not text:
        return default
    if not text.isdigit() or not 1024 <= int(text) <= limits.MAX_INT:
        raise ConfigError(
            f"{name}={text!r} must be a whole number of bytes, at least 1024",
            hint=f"unset {name} for the default of {default}",
        )
    return int(text)


def _env_count(name: str, default: int, low: int, high: int) -> int:
    text = os.environ.get(name, "")
    if not text:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise ConfigError(
            f"{name}={text!r} must be a whole number from {low} to {high}",
            hint=f"unset {name} for the default of {default}",
        )
    return int(text)


def _expiry_from_env() -> Expiry:
    default = Expiry()
    return Expiry(
        timestamp_s=max(1, round(_env_seconds(TIMESTAMP_EXPIRY_ENV, default.timestamp_s)))
    )


def _env_per_min(name: str, default: int) -> Rate:
    text = os.environ.get(name, "")
    if not text:
        return Rate(default)
    if not text.isdigit() or int(text) > 10**9:
        raise ConfigError(
            f"{name}={text!r} must be a whole number of events per minute (0: no limit)",
            hint=f"unset {name}",
        )
    return Rate(int(text))


def _limits_from_env() -> Limits:
    default = Limits()
    return Limits(
        failures=_env_per_min(AUTH_FAILURES_ENV, default.failures.burst),
        enrollments=_env_per_min(ENROLLS_ENV, default.enrollments.burst),
    )


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    database_url: str = ""
    public_url: str = ""  # `server run --public-url`: what agents are told, not the Host header
    artifacts_url: str = ""  # `--artifacts-url`: where agents fetch targets (a CDN)
    trusted_proxies: tuple[str, ...] = ()  # `--trusted-proxy`: whose X-Forwarded-* is believed
    expiry: Expiry = field(default_factory=_expiry_from_env)
    resign_check_s: float = field(default_factory=lambda: _env_seconds(RESIGN_CHECK_ENV, 60.0))
    lastseen_flush_s: float = field(default_factory=lambda: _env_seconds(LASTSEEN_FLUSH_ENV, 5.0))
    limits: Limits = field(default_factory=_limits_from_env)
    max_body_bytes: int = field(
        default_factory=lambda: _env_bytes(MAX_BODY_ENV, limits.MAX_BODY_BYTES)
    )
    max_in_flight: int = field(
        default_factory=lambda: _env_count(MAX_IN_FLIGHT_ENV, 1024, 2, 1_000_000)
    )
    retry_after_s: int = field(default_factory=lambda: _env_count(RETRY_AFTER_ENV, 5, 1, 3600))
    max_upload_bytes: int = field(
        default_factory=lambda: _env_bytes(MAX_UPLOAD_ENV, limits.MAX_UPLOAD_BYTES)
    )

    @property
    def db_url(self) -> str:
        return self.database_url or sqlite_url(self.data_dir)

    @property
    def tuf_dir(self) -> Path:
        return self.data_dir / "tuf"

    @property
    def upload_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "server.json"
