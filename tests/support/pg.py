"""A fresh PostgreSQL database per use, dropped afterwards (tests and benches)."""

import contextlib
import os
import secrets
from collections.abc import Iterator

import psycopg

PG_ADMIN_URL = os.environ.get("UPTEND_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def fresh_database(admin_url: str = PG_ADMIN_URL, prefix: str = "uptend_test") -> Iterator[str]:
    """Yield the SQLAlchemy URL of a new, empty database on the server of `admin_url`."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
