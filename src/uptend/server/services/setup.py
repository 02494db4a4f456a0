"""`uptend server init`: a data dir with database, TUF repository, default group and tokens."""

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

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
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    db.migrate(settings.db_url)
    repo = TufRepo.create(settings.tuf_dir, expiry=settings.expiry)
    settings.upload_dir.mkdir(mode=0o700)
    admin = tokens.new_secret(tokens.ADMIN_PREFIX)
    enroll = tokens.new_enroll_token(repo.root_fingerprint())
    asyncio.run(_seed(settings.db_url, admin, enroll))
    settings.config_file.write_text(json.dumps({"database_url": settings.database_url}) + "\n")
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
