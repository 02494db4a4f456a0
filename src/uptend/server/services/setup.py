"""`uptend server init`: a data dir with database, TUF repository, default group and tokens.

The data dir is private to the server's user, whatever the umask and whatever mode an
existing (empty) directory had: the dir itself, the upload dir and the key dir are 0700;
the SQLite database (with its -wal/-shm/-journal companions, which SQLite creates with the
database's own mode), `server.json` and the keys are 0600. `secure_data_dir` tightens all
of that again at every `server run`, for a data dir made before this rule or changed since.
The TUF metadata and targets inside stay world-readable: they are public by design (the
server serves them to anyone), and the 0700 data dir already keeps other local users out.
"""

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path

from uptend.durable import write_atomically
from uptend.errors import ConfigError
from uptend.protocol.credentials import TokenCreate, TokenCreated
from uptend.server import tokens
from uptend.server.services import tokens as token_service
from uptend.server.services.context import utcnow
from uptend.server.settings import Settings
from uptend.server.storage import db, groups
from uptend.server.storage import tokens as token_rows
from uptend.server.storage.tables import GroupRow
from uptend.server.tuf_repo import TufRepo

DEFAULT_GROUP = "default"
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
_SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


@dataclass(frozen=True, slots=True)
class InitResult:
    data_dir: Path
    database_url: str
    admin_token: str
    enroll_token: str
    root_fingerprint: str


def init_data_dir(settings: Settings) -> InitResult:
    """Create everything a server needs; refuse a data dir that already holds something."""
    data_dir = settings.data_dir
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise ConfigError(
            f"{data_dir} already exists and is not empty",
            hint="pick a new directory; `server init` never overwrites a server's keys or data",
        )
    data_dir.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    data_dir.chmod(PRIVATE_DIR)  # an existing empty dir keeps its own mode otherwise
    if (database := _sqlite_file(settings)) is not None:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE))  # SQLite keeps it
    db.migrate(settings.db_url)
    repo = TufRepo.create(settings.tuf_dir, expiry=settings.expiry)
    settings.upload_dir.mkdir(mode=PRIVATE_DIR)
    admin = tokens.new_secret(tokens.ADMIN_PREFIX)
    enroll = tokens.new_enroll_token(repo.root_fingerprint())
    asyncio.run(_seed(settings.db_url, admin, enroll))
    config = json.dumps({"database_url": settings.database_url}) + "\n"
    write_atomically(settings.config_file, config.encode(), mode=PRIVATE_FILE)
    secure_data_dir(settings)
    return InitResult(
        data_dir=data_dir,
        database_url=settings.db_url,
        admin_token=admin,
        enroll_token=enroll,
        root_fingerprint=repo.root_fingerprint(),
    )


async def _seed(url: str, admin: str, enroll: str) -> None:
    database = db.Database(url)
    try:
        async with database.transaction() as tx:
            now = utcnow()
            # the first of each kind (`uptend token create` makes more)
            await token_rows.add(tx, "admin", tokens.digest(admin), now, name="server init")
            await token_rows.add(tx, "enroll", tokens.digest(enroll), now, name="server init")
            if await groups.get(tx, DEFAULT_GROUP) is None:
                await groups.add(
                    tx, GroupRow(name=DEFAULT_GROUP, poll_interval_s=60.0, auto_update=True)
                )
    finally:
        await database.dispose()


def create_token_locally(data_dir: Path, body: TokenCreate) -> TokenCreated:
    """`uptend token create --data-dir`: on the server host, straight into its database."""
    settings = load_settings(data_dir, None)
    db.migrate(settings.db_url)
    fingerprint = TufRepo.open(settings.tuf_dir, expiry=settings.expiry).root_fingerprint()

    async def add() -> TokenCreated:
        database = db.Database(settings.db_url)
        try:
            async with database.transaction() as tx:
                return await token_service.add(tx, body, fingerprint, "local")
        finally:
            await database.dispose()

    return asyncio.run(add())


def _sqlite_file(settings: Settings) -> Path | None:
    """The embedded database file (None when `--database-url` names another database)."""
    return None if settings.database_url else settings.data_dir / "uptend.db"


def _tighten(path: Path, mode: int) -> None:
    if path.exists() and path.stat().st_mode & 0o777 != mode:
        path.chmod(mode)


def secure_data_dir(settings: Settings) -> None:
    """Make the data dir and what only the server may read private again (idempotent)."""
    _tighten(settings.data_dir, PRIVATE_DIR)
    for d in (settings.upload_dir, settings.tuf_dir / "keys"):
        _tighten(d, PRIVATE_DIR)
    files = [settings.config_file, *(settings.tuf_dir / "keys").glob("*.pem")]
    if (database := _sqlite_file(settings)) is not None:
        files += [database.with_name(database.name + suffix) for suffix in _SQLITE_COMPANIONS]
    for f in files:
        _tighten(f, PRIVATE_FILE)


def load_settings(data_dir: Path, database_url: str | None) -> Settings:
    """Settings for `server run`: the URL given now, else the one `init` recorded."""
    config = data_dir / "server.json"
    if not config.is_file():
        raise ConfigError(
            f"{data_dir} is not an uptend server data dir",
            hint=f"create one with `uptend server init {data_dir}`",
        )
    recorded = json.loads(config.read_text()).get("database_url", "")
    return Settings(data_dir=data_dir, database_url=database_url or recorded)
