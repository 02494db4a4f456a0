"""One log file per update attempt, the newest `KEEP` per app kept (CapaInstaller's run logs)."""

import contextlib
import logging
from datetime import UTC, datetime
from pathlib import Path

KEEP = 20
log = logging.getLogger("uptend.agent")


class AttemptLog:
    """logs/updates/<app>-<UTC time>-<version>.log: what one update attempt did."""

    def __init__(self, directory: Path, app: str, version: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        self.path = directory / f"{app}-{stamp}-{version}.log"
        self.app = app
        for old in attempt_logs(directory, app)[:-KEEP]:
            with contextlib.suppress(OSError):
                old.unlink()

    def write(self, message: str) -> None:
        log.info("%s: %s", self.app, message)
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        with contextlib.suppress(OSError), self.path.open("a") as f:
            f.write(f"{stamp} {message}\n")


def attempt_logs(directory: Path, app: str | None) -> list[Path]:
    pattern = f"{app}-*.log" if app else "*.log"
    return sorted(directory.glob(pattern), key=lambda p: p.stat().st_mtime_ns)
