"""The Alembic migrations build exactly the schema `storage/tables.py` declares, on both dialects.

`compare_metadata` is what `alembic revision --autogenerate` runs: an empty diff means no
table, column, type, index or constraint is missing from a migration or left over in one.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect, text

from uptend.server.storage.db import MIGRATIONS, migrate, sqlite_url
from uptend.server.storage.tables import Base


@pytest.fixture
def url(database_url: str, tmp_path: Path) -> str:
    """A URL to an empty database: a SQLite file in tmp_path, or a fresh PostgreSQL one."""
    return database_url or sqlite_url(tmp_path)


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    engine = create_engine(url)
    yield engine
    engine.dispose()


def drift(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def head() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    revision = ScriptDirectory.from_config(cfg).get_current_head()
    assert revision is not None
    return revision


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def schema(engine: Engine) -> dict[str, object]:
    """Columns, indexes and unique constraints per table, as comparable text."""
    with engine.connect() as conn:
        insp = inspect(conn)
        return {
            table: (
                [
                    (c["name"], str(c["type"]), c["nullable"], c["default"])
                    for c in insp.get_columns(table)
                ],
                sorted(str(sorted(i.items())) for i in insp.get_indexes(table)),
                sorted(str(sorted(u.items())) for u in insp.get_unique_constraints(table)),
            )
            for table in sorted(insp.get_table_names())
        }


def test_migrated_database_matches_the_tables_module(url: str, engine: Engine) -> None:
    migrate(url)
    assert drift(engine) == []
    assert current(engine) == head()
    tables = set(inspect(engine).get_table_names())
    assert tables == set(Base.metadata.tables) | {"alembic_version"}
    # and the check is not vacuous: a missing index is drift
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_audit_at"))
    assert [d[0] for d in drift(engine)] == ["add_index"]


def test_migrate_is_idempotent(url: str, engine: Engine) -> None:
    migrate(url)
    before = schema(engine)
    migrate(url)
    migrate(url)
    assert current(engine) == head()
    assert drift(engine) == []
    assert schema(engine) == before
