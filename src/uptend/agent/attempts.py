"""One log file per update attempt, the newest `KEEP` per app kept (CapaInstaller's run logs)."""

import contextlib
import logging
import re
from datetime import UTC, datetime
from pathlib import Path

from uptend.agent import files

KEEP = 20
log = logging.getLogger("uptend.agent")


class AttemptLog:
    """logs/updates/<app>-<UTC time>-<version>.log: what one update attempt did."""

    def __init__(self, directory: Path, app: str, version: str) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        self.path = directory / f"{app}-{stamp}-{version}.log"
        self.app = app
        for old in attempt_logs(directory, app)[: -(KEEP - 1)]:  # room for this one
            with contextlib.suppress(OSError):
                old.unlink()

    def write(self, message: str) -> None:
        log.info("%s: %s", self.app, message)
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        with (
            contextlib.suppress(OSError),
            open(self.path, "a", opener=files.private_opener) as f,
        ):
            f.write(f"{stamp} {message}\n")


_NAME = re.compile(r"^(?P<app>.+)-(?P<stamp>\d{8}T\d{6}\.\d{6}Z)-(?P<version>[^/]+)\.log$")


def attempt_logs(directory: Path, app: str | None) -> list[Path]:
    """Attempt logs of `app` (or all apps), oldest first by the time in their name."""
    found: list[tuple[str, Path]] = []
    for path in directory.glob("*.log"):
        match = _NAME.match(path.name)
        if match and (app is None or match["app"] == app):
            found.append((match["stamp"], path))
    return [path for _, path in sorted(found)]
