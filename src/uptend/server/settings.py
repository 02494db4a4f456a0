"""Where the server keeps things: one data dir, a database URL, TUF lifetimes."""

from dataclasses import dataclass, field
from pathlib import Path

from uptend.server.storage.db import sqlite_url
from uptend.server.tuf_repo import Expiry

MAX_UPLOAD_BYTES = 2 << 30  # 2 GiB per release archive
MAX_UNPACKED_BYTES = 8 << 30
MAX_FILES = 200_000


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    database_url: str = ""
    expiry: Expiry = field(default_factory=Expiry)
    resign_check_s: float = 60.0

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
