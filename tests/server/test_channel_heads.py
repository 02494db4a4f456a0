"""Channel heads and the change generation: kept in the publish/group/retry transactions."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from tests.server.test_agent_api import admin_client, upload
from tests.support.fleet import Fleet
from uptend.server.storage.db import MIGRATIONS, migrate, sqlite_url


def _query(fleet: Fleet, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(fleet.database_url or sqlite_url(fleet.server_dir))
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def test_head_is_the_newest_by_pep440_not_by_publish_order(any_db_fleet: Fleet) -> None:
    fleet = any_db_fleet
    start = _query(fleet, "SELECT value FROM generation")[0][0]
    assert isinstance(start, int)
    for version in ("1.9", "1.10", "1.2"):
        upload(fleet, "heads", version)
    upload(fleet, "heads", "3.0", channel="beta")
    heads = _query(fleet, "SELECT channel, version, target FROM channel_heads WHERE app = 'heads'")
    assert sorted(heads) == [
        ("beta", "3.0", "heads/3.0/heads-3.0.tar.gz"),
        ("stable", "1.10", "heads/1.10/heads-1.10.tar.gz"),
    ]
    assert _query(fleet, "SELECT value FROM generation") == [(start + 4,)]
    with admin_client(fleet) as http:
        assert http.put("/api/v1/groups/default", json={"app": "heads"}).status_code == 200
        refused = http.put("/api/v1/groups/default", json={"app": "no such/app"})
        assert refused.status_code == 422
    assert _query(fleet, "SELECT value FROM generation") == [(start + 5,)]  # refused: no bump


def test_migration_backfills_heads_from_existing_releases(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
            for i, version in enumerate(["2.0", "10.0", "9.1"]):
                conn.execute(
                    text(
                        "INSERT INTO releases (app, version, channel, target, length, sha256,"
                        " created_at) VALUES ('a', :v, 'stable', :t, 1, '', '2026-01-01')"
                    ),
                    {"v": version, "t": f"a/{version}/a-{version}.tar.gz#{i}"},
                )
        migrate(url)
        with engine.connect() as conn:
            heads = list(conn.execute(text("SELECT app, channel, version FROM channel_heads")))
            generation = list(conn.execute(text("SELECT id, value FROM generation")))
    finally:
        engine.dispose()
    assert [tuple(h) for h in heads] == [("a", "stable", "10.0")]
    assert [tuple(g) for g in generation] == [(1, 1)]
